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

/// Writes the `lootsync(1)` man page (roff) to `out`.
pub fn man_page(out: &mut dyn Write) -> io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)
}

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
        let export = std::fs::read_to_string(dir.path().join("lootsync-export.1")).unwrap();
        assert!(export.contains("history"), "{export}");
    }
}
