//! Command-line flags, spelled as CoreDNS's (Go's `flag` package: `-name`,
//! `--name`, `-name value`, `-name=value`). clap cannot take single-dash long
//! flags, hence this small parser.

use std::path::PathBuf;

pub const USAGE: &str = "Usage of oxidns:
  -conf FILE        Corefile to load (default \"Corefile\")
  -dns.port PORT    default port for dns:// zones (default 53)
  -pidfile FILE     write the process ID to FILE
  -plugins          list the plugins, in execution order, and exit
  -quiet            do not print the start-up banner
  -version          show the version and exit
  -workers N        threads answering queries, each with its own UDP socket per address (default: one per CPU)
  -pin              keep each UDP socket's thread on a CPU of its own (Linux)
  -check            check the configuration: print file:line: reason for each problem, exit 1 if any";

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cli {
    pub conf: Option<PathBuf>,
    pub dns_port: u16,
    pub pidfile: Option<PathBuf>,
    pub plugins: bool,
    pub quiet: bool,
    pub version: bool,
    pub check: bool,
    pub help: bool,
    /// Runtime worker threads; 0 means one per CPU.
    pub workers: usize,
    /// Pin the UDP threads to CPUs.
    pub pin: bool,
}

impl Cli {
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Cli, String> {
        let mut cli = Cli {
            dns_port: 53,
            ..Cli::default()
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                return Err(format!("unexpected argument: {arg}"));
            };
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (flag, None),
            };
            let mut value = |name: &str| {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("flag needs an argument: -{name}"))
            };
            match name {
                "conf" => cli.conf = Some(PathBuf::from(value(name)?)),
                "dns.port" => {
                    let text = value(name)?;
                    cli.dns_port = text
                        .parse()
                        .map_err(|_| format!("invalid value \"{text}\" for flag -dns.port"))?;
                }
                "workers" => {
                    let text = value(name)?;
                    cli.workers = text
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("invalid value \"{text}\" for flag -workers"))?;
                }
                "pidfile" => cli.pidfile = Some(PathBuf::from(value(name)?)),
                "plugins" => cli.plugins = boolean(name, inline.as_deref())?,
                "quiet" => cli.quiet = boolean(name, inline.as_deref())?,
                "pin" => cli.pin = boolean(name, inline.as_deref())?,
                "version" => cli.version = boolean(name, inline.as_deref())?,
                "check" => cli.check = boolean(name, inline.as_deref())?,
                "h" | "help" => cli.help = true,
                _ => return Err(format!("flag provided but not defined: -{name}")),
            }
        }
        Ok(cli)
    }
}

fn boolean(name: &str, value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("true" | "1" | "t" | "T" | "TRUE" | "True") => Ok(true),
        Some("false" | "0" | "f" | "F" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(format!("invalid boolean value \"{other}\" for -{name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        Cli::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn go_style_flags() {
        let cli = parse(&[
            "-conf",
            "x/Corefile",
            "--dns.port=1053",
            "-quiet",
            "-pidfile=/tmp/p",
        ])
        .unwrap();
        assert_eq!(cli.conf, Some(PathBuf::from("x/Corefile")));
        assert_eq!(cli.dns_port, 1053);
        assert!(cli.quiet);
        assert_eq!(cli.pidfile, Some(PathBuf::from("/tmp/p")));
        assert!(!cli.check);
    }

    #[test]
    fn defaults() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.dns_port, 53);
        assert_eq!(cli.conf, None);
        assert_eq!(cli.workers, 0, "one worker per CPU");
    }

    #[test]
    fn pin_is_a_boolean_flag() {
        assert!(parse(&["-pin"]).unwrap().pin);
        assert!(!parse(&["-pin=false"]).unwrap().pin);
        assert!(!parse(&[]).unwrap().pin);
    }

    #[test]
    fn workers_is_a_positive_count() {
        assert_eq!(parse(&["-workers", "3"]).unwrap().workers, 3);
        assert!(parse(&["-workers=0"]).is_err());
        assert!(parse(&["-workers=many"]).is_err());
    }

    #[test]
    fn booleans_take_explicit_values() {
        assert!(!parse(&["-quiet=false"]).unwrap().quiet);
        assert!(parse(&["-check=true"]).unwrap().check);
        assert!(parse(&["-quiet=maybe"]).is_err());
    }

    #[test]
    fn mistakes_are_reported() {
        assert_eq!(
            parse(&["-nope"]).unwrap_err(),
            "flag provided but not defined: -nope"
        );
        assert_eq!(
            parse(&["-conf"]).unwrap_err(),
            "flag needs an argument: -conf"
        );
        assert!(
            parse(&["-dns.port", "70000"])
                .unwrap_err()
                .contains("invalid value")
        );
        assert!(parse(&["stray"]).is_err());
    }
}
