//! Shell completions and man pages, generated from the clap definition of the command line
//! so they can never disagree with it.

use super::args::Cli;
use clap::CommandFactory;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "lootsync", out);
}

/// Writes the `lootsync(1)` man page (roff) to `out`: what clap knows, then the FILES,
/// ENVIRONMENT and EXAMPLES sections it cannot.
pub fn man_page(out: &mut dyn Write) -> io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)?;
    out.write_all(EXTRA_SECTIONS.as_bytes())
}

/// The sections of `lootsync(1)` beyond the generated ones (roff).
const EXTRA_SECTIONS: &str = r#".SH FILES
.TP
\fI/etc/lootsync/lootsync.toml\fR
the config (\fB\-\-config\fR); without one, the embedded loopback defaults are used
.TP
\fIstate_dir/<group>.lootlog\fR
the append\-only log: the truth every total is replayed from
.TP
\fIstate_dir/<group>.lootlog.checkpoint\fR, \fI.synced\fR
a cache of the replay and the length known to be on disk; safe to delete
.TP
\fIstate_dir/lootsync.lock\fR
held by the daemon, or by a command working offline
.TP
\fIstate_dir/control.sock\fR
the running daemon's control socket (mode 0600, or 0660 with control.group)
.TP
\fIgroup.key\fR, \fIofficer.key\fR, \fIroot.key\fR
secret keys written by \fBlootsync keygen\fR, mode 0600
.SH ENVIRONMENT
.TP
\fBRUST_LOG\fR
overrides log.level (e.g. info,sync=debug for the SYNC lines)
.TP
\fBNOTIFY_SOCKET\fR
set by systemd: the daemon reports READY=1 and STOPPING=1 to it
.SH EXAMPLES
.nf
lootsync run
lootsync adjust \-\-player Alice \-\-delta 30 \-\-reason "raid attendance"
lootsync award \-\-delta 10 \-\-reason "Onyxia kill" Alice Bob Carol
lootsync decay \-\-percent 10 \-\-reason "weekly decay" \-\-dry\-run
lootsync history \-\-player Bob
lootsync revert 1a2b3c4d \-\-reason "Bob was not there"
lootsync import standings.csv \-\-dry\-run
lootsync export \-\-format csv > standings.csv
lootsync officer list
lootsync status
.fi
"#;

/// `lootsync man`: the main page on stdout, or with `dir` every page written there (their
/// paths printed).
pub fn print_man_pages(dir: Option<&Path>) -> anyhow::Result<()> {
    use anyhow::Context;
    match dir {
        Some(dir) => {
            for path in write_man_pages(dir)
                .with_context(|| format!("cannot write man pages to {}", dir.display()))?
            {
                println!("{}", path.display());
            }
        }
        None => man_page(&mut io::stdout())?,
    }
    Ok(())
}

/// Writes `lootsync.1` and one page per subcommand (`lootsync-adjust.1`, ...) into `dir`,
/// creating it if needed. Returns the files written.
pub fn write_man_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)?;
    let mut main = Vec::new();
    man_page(&mut main)?;
    std::fs::write(dir.join("lootsync.1"), main)?;
    let mut written: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("lootsync") && name.ends_with(".1")
        })
        .collect();
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_cover_every_subcommand() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            completions(shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            for sub in Cli::command().get_subcommands() {
                assert!(
                    text.contains(sub.get_name()),
                    "{shell}: no {}",
                    sub.get_name()
                );
            }
        }
    }

    #[test]
    fn man_pages_describe_the_commands() {
        let mut out = Vec::new();
        man_page(&mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH lootsync"),
            "{page}"
        );
        assert!(page.contains("export"), "subcommands listed");
        for section in [".SH FILES", ".SH ENVIRONMENT", ".SH EXAMPLES"] {
            assert!(page.contains(section), "{section}");
        }
        assert!(page.contains("lootsync award"), "{page}");

        let dir = tempfile::tempdir().unwrap();
        let files = write_man_pages(dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"lootsync.1".to_string()), "{names:?}");
        assert!(
            names.contains(&"lootsync-export.1".to_string()),
            "{names:?}"
        );
        let main = std::fs::read_to_string(dir.path().join("lootsync.1")).unwrap();
        assert!(
            main.contains(".SH EXAMPLES"),
            "the written page has them too"
        );
        let export = std::fs::read_to_string(dir.path().join("lootsync-export.1")).unwrap();
        assert!(export.contains("history"), "{export}");
    }
}
