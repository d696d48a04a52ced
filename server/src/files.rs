//! Reading the files a user names (scenarios, plans, summaries, traces, shard
//! records): only regular files, and never more than a bound.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// `path` opened for reading, if it is a regular file. It is looked at before
/// it is opened — opening a named pipe waits for a writer, forever — and again
/// once open, in case the name was pointed elsewhere in between. Errors do not
/// name the path (callers do).
pub fn open_regular(path: &Path) -> Result<File, String> {
    let before = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !before.is_file() {
        return Err("not a regular file".into());
    }
    let file = File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let opened = file
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?;
    if !opened.is_file() {
        return Err("not a regular file".into());
    }
    Ok(file)
}

/// The bytes of `path`, a regular file of at most `max` bytes, read without
/// reading more than that (a larger file is an error).
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("larger than {max} bytes; refused unread"));
    }
    Ok(bytes)
}

/// [`read_bounded`], as UTF-8 text.
pub fn read_text_bounded(path: &Path, max: u64) -> Result<String, String> {
    String::from_utf8(read_bounded(path, max)?).map_err(|e| format!("not UTF-8 text: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("stampede-files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_file_of_the_bound_is_read_and_one_byte_more_is_refused() {
        // Proves the bound on both sides: exactly `max` bytes is read whole, `max + 1` refused.
        let dir = scratch("bound");
        let path = dir.join("f");
        std::fs::write(&path, b"abcd").unwrap();
        assert_eq!(read_bounded(&path, 4).unwrap(), b"abcd");
        assert_eq!(read_text_bounded(&path, 4).unwrap(), "abcd");
        let refused = read_bounded(&path, 3).unwrap_err();
        assert!(refused.contains("larger than 3 bytes"), "{refused}");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(read_text_bounded(&path, 4).unwrap_err().contains("UTF-8"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_named_pipe_a_folder_or_a_device_is_refused_without_waiting() {
        // Proves (found from outside: `stampede run f.toml` on a named pipe waited forever for
        // a writer): a FIFO is refused before it is opened; so are a folder and a device; a
        // missing file says it cannot be read.
        let dir = scratch("fifo");
        let fifo = dir.join("pipe.toml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            assert_eq!(open_regular(&fifo).unwrap_err(), "not a regular file");
        }
        assert_eq!(open_regular(&dir).unwrap_err(), "not a regular file");
        if Path::new("/dev/null").exists() {
            assert_eq!(
                read_bounded(Path::new("/dev/null"), 10).unwrap_err(),
                "not a regular file"
            );
        }
        assert!(
            open_regular(&dir.join("missing"))
                .unwrap_err()
                .starts_with("cannot read it:")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
