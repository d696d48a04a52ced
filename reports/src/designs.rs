//! The `stampede designs` listing: the presets, every switch with the
//! mistake its other values make, and the sabotage hooks, rendered from
//! plain rows (the design table itself belongs to the server).

use std::fmt::Write;

/// A switch as the listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchRow<'a> {
    /// Its name (`--set name=value`).
    pub name: &'a str,
    /// Its values, the reference first.
    pub values: &'a [&'a str],
    /// The mistake the other values make.
    pub mistake: &'a str,
}

/// The listing: `presets` and `sabotage` as (name, what it is or breaks).
pub fn render_designs(
    presets: &[(&str, &str)],
    switches: &[SwitchRow<'_>],
    sabotage: &[(&str, &str)],
) -> String {
    let mut out = String::from("Presets:\n");
    for (name, description) in presets {
        let _ = writeln!(out, "  {name:<16} {description}");
    }
    out.push_str("\nSwitches (first value is the reference; set with --set switch=value):\n");
    for s in switches {
        let values = s.values.join(" | ");
        let _ = writeln!(out, "  {:<20} {values:<40} {}", s.name, s.mistake);
    }
    out.push_str(
        "\nSabotage (test hooks that break the reference on purpose; not mistakes, not in any preset; set with --set sabotage=value):\n",
    );
    for (name, breaks) in sabotage {
        let _ = writeln!(out, "  {name:<20} {breaks}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_names_every_preset_switch_and_hook_in_aligned_columns() {
        // Proves: each row appears with its columns padded (name 20, values 40), in order.
        let switches = [SwitchRow {
            name: "inventory",
            values: &["reference", "read-then-write"],
            mistake: "oversells",
        }];
        let text = render_designs(
            &[("reference", "no mistakes")],
            &switches,
            &[("no-refunds", "keeps money")],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Presets:");
        assert_eq!(lines[1], format!("  {:<16} no mistakes", "reference"));
        assert!(lines[3].starts_with("Switches (first value is the reference"));
        let row = format!(
            "  {:<20} {:<40} oversells",
            "inventory", "reference | read-then-write"
        );
        assert_eq!(lines[4], row);
        assert!(lines[6].starts_with("Sabotage (test hooks"));
        assert_eq!(lines[7], format!("  {:<20} keeps money", "no-refunds"));
        assert_eq!(lines.len(), 8);
    }
}
