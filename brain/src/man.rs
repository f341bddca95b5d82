//! The manual page (`twinsync man`): clap's sections for the name, synopsis,
//! description and options, then the sections a sysadmin looks for — the
//! commands (described here, not as pages of their own, which do not
//! exist), signals, files, configuration and examples — and only pages that
//! exist under SEE ALSO.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;

/// COMMANDS: each subcommand with its arguments and what it does.
fn commands(cmd: &clap::Command) -> String {
    let mut out = String::from(".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut usage = format!("\\fBtwinsync {}\\fR", sub.get_name());
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let value = arg
                .get_value_names()
                .and_then(|v| v.first())
                .map_or_else(|| id.to_uppercase(), ToString::to_string);
            let word = match arg.get_long().map(|l| l.replace('-', "\\-")) {
                Some(long) if arg.get_action().takes_values() => {
                    format!("\\-\\-{long} \\fI{value}\\fR")
                }
                Some(long) => format!("\\-\\-{long}"),
                None => format!("\\fI{value}\\fR"),
            };
            if arg.is_required_set() {
                usage.push_str(&format!(" {word}"));
            } else {
                usage.push_str(&format!(" [{word}]"));
            }
        }
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(ToString::to_string)
            .unwrap_or_default();
        out.push_str(&format!(".TP\n{usage}\n{}\n", escape(&about)));
    }
    out
}

/// Text for roff: hyphens as `\-`, backslashes doubled, no line starting
/// with a control character.
fn escape(text: &str) -> String {
    text.replace('\\', "\\e")
        .replace('-', "\\-")
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The sections after the commands, in roff.
const TAIL: &str = r#".SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Finish the batch in flight, save the index, stop the agents and exit 0.
.TP
\fBSIGHUP\fR
Read the excludes from the config file again.
.TP
\fBSIGUSR1\fR
Merge both replicas again, in full.
.SH CONFIGURATION
Every option is also a key of the TOML file given with \fB\-\-config\fR
(named after the long option, with underscores: \fBrsync_extra\fR,
\fBbwlimit\fR; \fB\-\-max\-delete\fR is \fBmax_delete_percent\fR and
\fB\-\-conflict\-copies\fR is \fBconflict_dir\fR). Flags override the file;
lists (excludes, rsync arguments, banned programs) add up. An error names
the file, the line and the key, and nothing starts (exit 2).
\fI/usr/share/doc/twinsync/twinsync.toml\fR documents every key.
.SH FILES
.TP
\fI/etc/twinsync/NAME.toml\fR
The config file of instance NAME, as the \fBtwinsync@NAME.service\fR
template unit and the Pacemaker resource agent read it.
.TP
\fIROOT/.twinsync/\fR
Each replica's state: \fBlock\fR (the instance, host and pid holding it),
\fBtrash/\fR (deleted and overwritten files, kept \fB\-\-trash\-days\fR),
\fBconflicts/\fR (with \fB\-\-conflict\-copies state\-dir\fR) and
\fBstage/\fR (copies in flight); on the left also \fBindex/\fR (the last
sync's state) and \fBconflicts.log\fR (one JSON line per conflict).
Never synced.
.TP
\fI$TWINSYNC_RUNTIME_DIR\fR, \fI$XDG_RUNTIME_DIR/twinsync/\fR, \fI/run/twinsync/\fR (root), \fI/tmp/twinsync\-UID/\fR
The control sockets \fINAME.sock\fR that \fBstatus\fR, \fBflush\fR,
\fBpause\fR, \fBresume\fR and \fBconflicts\fR talk to (the first that is set,
in this order).
.TP
\fI~/.cache/twinsync/agents/VERSION/twinsync\fR (on a remote host)
The agent copied there when the host had none of this version (see
\fB\-\-no\-agent\-install\fR).
.TP
\fI/usr/lib/systemd/system/twinsync@.service\fR
The template unit: one instance per \fI/etc/twinsync/NAME.toml\fR.
.TP
\fI/usr/lib/ocf/resource.d/twinsync/twinsync\fR
The Pacemaker resource agent (\fBocf:twinsync:twinsync\fR): start, stop
(a flush, then SIGTERM), monitor at depths 0, 10 and 20.
.SH ENVIRONMENT
.TP
\fBTWINSYNC_LOG\fR
A log filter (\fBinfo\fR, \fBtwinsync=debug\fR) over \fB\-d\fR, handed to
the agents too.
.TP
\fBTWINSYNC_RUNTIME_DIR\fR
Where the control sockets are (see FILES).
.TP
\fBNO_COLOR\fR
No colours in the logs.
.SH EXAMPLES
Sync two local folders live (Ctrl\-C stops after the batch in flight):
.PP
.RS
twinsync ~/Documents /mnt/backup/Documents
.RE
.PP
A remote replica, limited to 2 MiB/s each way; the remote host gets this
binary as its agent if it has none:
.PP
.RS
twinsync \-\-bwlimit 2M ~/src me@build:/srv/src
.RE
.PP
Merge once and exit, showing first what would be done:
.PP
.RS
.nf
twinsync \-n \-s ~/a ~/b
twinsync \-s ~/a ~/b
.fi
.RE
.PP
One instance as a service, and a hand\-over that loses nothing:
.PP
.RS
.nf
systemctl enable \-\-now twinsync@projects    # reads /etc/twinsync/projects.toml
twinsync status projects
twinsync flush projects \-\-timeout 60 && systemctl stop twinsync@projects
.fi
.RE
.PP
A config file:
.PP
.RS
.nf
left = "/srv/projects"
right = "backup@nas:/volume1/projects"
exclude = ['(^|/)\e.git/objects/', '\e.o$']
bwlimit = "5M"
metrics = "127.0.0.1:9723"
.fi
.RE
.SH SEE ALSO
\fBrsync\fR(1), \fBssh\fR(1), \fBssh_config\fR(5), \fBsystemd.unit\fR(5)
"#;

/// The whole page, in roff.
///
/// # Errors
/// When clap's sections cannot be rendered.
pub fn render(out: &mut Vec<u8>) -> std::io::Result<()> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    out.write_all(commands(&cmd).as_bytes())?;
    out.write_all(TAIL.as_bytes())?;
    man.render_version_section(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_the_sections_a_sysadmin_looks_for() {
        let mut page = Vec::new();
        render(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        for section in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "COMMANDS",
            "SIGNALS",
            "CONFIGURATION",
            "FILES",
            "ENVIRONMENT",
            "EXAMPLES",
            "SEE ALSO",
        ] {
            assert!(page.contains(&format!(".SH {section}\n")), "{section}");
        }
        // No page of a subcommand is referred to: none exists.
        assert!(!page.contains("twinsync\\-status(1)"), "{page}");
        assert!(
            page.contains("\\fBtwinsync flush\\fR [\\fINAME\\fR] [\\-\\-timeout \\fISECS\\fR]"),
            "{page}"
        );
        // Hidden commands stay hidden.
        assert!(!page.contains("rsync\\-server"), "{page}");
    }
}
