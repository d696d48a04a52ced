//! `stampede report merge`: the shards of one sharded load (`stampede load
//! --shard I/N --start-at T`) → one report, its latencies from the added
//! HdrHistogram logs, its thresholds and audit judged once
//! (`stampede_loadgen::merge` does the work).

use crate::load::{host_port, parse_bound, parse_invariant, parse_threshold, shop_hosts};
use stampede_loadgen::audit::{self, Backoffice};
use stampede_loadgen::merge::{self, ShareRun};
use stampede_loadgen::threshold::Threshold;
use stampede_reports::{AuditVerdict, LoadReport};
use std::path::PathBuf;
use std::time::Duration;

/// What `report merge` was asked to do.
#[derive(clap::Args)]
pub struct MergeLoadArgs {
    /// The shards' folders (each written by `stampede load --shard I/N`): every part once.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where the merged report is written [default: stampede-out/load-merged].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// An SLO judged on the merged report (repeatable); replaces the shards' own rules.
    #[arg(long = "threshold", value_name = "RULE", value_parser = parse_threshold)]
    pub thresholds: Vec<Threshold>,
    /// The shop the shards loaded (`http://host:port`; of several replicas the first): its
    /// /admin/audit is read once for the audit.
    #[arg(long, requires = "psp", conflicts_with = "no_audit")]
    pub host: Option<String>,
    /// The PSP of that shop (`http://host:port`): its ledger is read for the audit.
    #[arg(long, requires = "host")]
    pub psp: Option<String>,
    /// Bearer token of the shop's /admin/audit.
    #[arg(long, default_value = "stampede-admin")]
    pub admin_token: String,
    /// How long the shop may take to settle before the audit reads it.
    #[arg(long, default_value = "30s", value_parser = parse_bound)]
    pub settle: Duration,
    /// Do not judge this invariant either (repeatable); the shards' own --skip apply too.
    #[arg(long = "skip", value_name = "INVARIANT", value_parser = parse_invariant)]
    pub skip: Vec<stampede_core::Invariant>,
    /// Merge the latencies and judge the thresholds without the audit (no shop at hand): the
    /// report lists every invariant as not judged, skipped by you.
    #[arg(long)]
    pub no_audit: bool,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Each folder's shard, read and checked to be the parts of one run.
fn read_shares(dirs: &[PathBuf]) -> Result<Vec<ShareRun>, String> {
    let mut shares = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let path = dir.join("report.json");
        let text = stampede_sim::read_text_bounded(&path, stampede_reports::SUMMARY_BYTES_MAX)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let report =
            stampede_reports::parse_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        shares.push(ShareRun::read(dir, report)?);
    }
    merge::check_shares(shares)
}

/// The rules to judge: those given, else the shards' own (which must agree).
fn thresholds(args: &MergeLoadArgs, shares: &[ShareRun]) -> Result<Vec<Threshold>, String> {
    if !args.thresholds.is_empty() {
        return Ok(args.thresholds.clone());
    }
    merge::shared_thresholds(shares)?
        .iter()
        .map(|rule| parse_threshold(rule).map_err(|e| format!("a shard's threshold: {e}")))
        .collect()
}

/// Fills in the audit: judged on the shop's evidence and every shard's, or
/// skipped as asked, or recorded as not done (which fails the report).
fn audit(args: &MergeLoadArgs, shares: &[ShareRun], report: &mut LoadReport) -> Result<(), String> {
    let opt_outs = merge::opt_outs(shares, &args.skip)?;
    let (Some(host), Some(psp)) = (&args.host, &args.psp) else {
        let why = if args.no_audit {
            "skipped by --no-audit"
        } else {
            "the audit was NOT judged: `report merge` needs the shop (--host and --psp) to judge every shard's evidence together; --no-audit merges without it on purpose"
        };
        report.audit = stampede_core::Invariant::ALL
            .iter()
            .map(|i| AuditVerdict {
                invariant: i.name().to_string(),
                outcome: "not_judged".into(),
                violations: 0,
                examples: Vec::new(),
                reason: Some(why.to_string()),
                lost_to_faults: 0,
            })
            .collect();
        if !args.no_audit {
            report.audit_not_done = Some(why.to_string());
        }
        report.notes.push(why.to_string());
        return Ok(());
    };
    let shop = shop_hosts(host)?.remove(0);
    let url = format!("http://{shop}");
    let elsewhere: Vec<&str> = shares
        .iter()
        .map(|s| s.report.target.as_str())
        .filter(|t| !t.split(", ").any(|t| t == url))
        .collect();
    if !elsewhere.is_empty() {
        // The same shop may have another name from here than from the workers.
        let note = format!(
            "the audit read the shop at {url}; shards loaded {}: if that is not the same shop, the verdicts are meaningless",
            elsewhere.join(" and ")
        );
        eprintln!("warning: {note}");
        report.notes.push(note);
    }
    let office = Backoffice::new(&shop, &host_port(psp)?, &args.admin_token);
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let (verdicts, notes) =
        runtime.block_on(merge::judge_shares(&office, shares, args.settle, &opt_outs))?;
    report.audit = audit::verdicts(&verdicts);
    report.notes.extend(notes);
    Ok(())
}

/// `stampede report merge`: exit 0 when the audit holds and every threshold
/// passes, 1 otherwise (an audit not judged included).
pub fn merge_load(args: &MergeLoadArgs) -> Result<u8, String> {
    let shares = read_shares(&args.dirs)?;
    let rules = thresholds(args, &shares)?;
    let log = merge::merged_log(&shares)?;
    let mut report = merge::merged_report(&shares, &log)?;
    audit(args, &shares, &mut report)?;
    for rule in &rules {
        report.thresholds.push(rule.judge(&report)?);
    }
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("stampede-out/load-merged"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, bytes) in merge::merged_files(&report, &log)? {
        let path = dir.join(&name);
        std::fs::write(&path, bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        report.files.push(name);
    }
    crate::load::write_report(&dir, &report)?;
    if args.json {
        println!("{}", stampede_reports::render_json(&report));
    } else {
        print!("{}", stampede_reports::render_terminal(&report));
        println!(
            "  merged {} shards into {}/report.{{html,md,json}} and latency.hlog",
            shares.len(),
            dir.display()
        );
    }
    Ok(if report.passed() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `stampede report ARGS…` as clap parses it.
    fn parse(args: &[&str]) -> Result<crate::load::ReportArgs, clap::Error> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            report: crate::load::ReportArgs,
        }
        let argv = std::iter::once("report").chain(args.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv).map(|c| c.report)
    }

    #[test]
    fn report_keeps_rendering_folders_and_merge_is_a_subcommand() {
        // Proves: `report DIR…` still takes folders (no subcommand); `report
        // merge DIR…` parses as the merge with its options; merge without
        // folders, --host without --psp, and --host with --no-audit are refused.
        let plain = parse(&["a", "b", "--out", "c"]).unwrap();
        assert!(plain.command.is_none());
        assert_eq!(plain.dirs, [PathBuf::from("a"), PathBuf::from("b")]);
        let merged = parse(&["merge", "s1", "s2", "--no-audit", "--threshold", "p99<1s"]).unwrap();
        let Some(crate::load::ReportCommand::Merge(m)) = merged.command else {
            panic!("merge parsed as folders");
        };
        assert_eq!(m.dirs, [PathBuf::from("s1"), PathBuf::from("s2")]);
        assert!(m.no_audit && m.thresholds.len() == 1);
        assert!(parse(&["merge"]).is_err());
        assert!(parse(&["merge", "s1", "--host", "http://127.0.0.1:1"]).is_err());
        let both = [
            "merge",
            "s1",
            "--host",
            "http://a:1",
            "--psp",
            "http://b:2",
            "--no-audit",
        ];
        assert!(parse(&both).is_err());
        assert!(parse(&[]).is_err());
    }
}
