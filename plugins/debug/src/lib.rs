//! `debug`: as CoreDNS's debug, a panic while answering is not recovered
//! (it takes the process down, for its stack trace) and `[DEBUG]` log lines
//! are shown. No arguments, no handler: this only sets
//! [`oxidns_server::config::BlockSettings::debug`]; the server acts on it.

use oxidns_server::{ConfigError, PluginEntry, Setup};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "debug",
    setup,
};

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    // Repeating `debug` changes nothing, and CoreDNS accepts it: so do we.
    for directive in setup.directives() {
        directive.bare()?;
    }
    setup.settings().debug = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxidns_server::test_util::{config, config_error};

    #[test]
    fn debug_turns_debug_on_for_its_block() {
        let config = config(". {\n debug\n}", &[PLUGIN]).unwrap();
        assert!(config.blocks[0].debug);
        assert!(config.debug());
    }

    #[test]
    fn without_debug_it_is_off() {
        let config = config(". {\n}", &[PLUGIN]).unwrap();
        assert!(!config.blocks[0].debug);
        assert!(!config.debug());
    }

    #[test]
    fn debug_in_one_block_leaves_the_others_off() {
        let config = config("a.org {\n debug\n}\nb.org {\n}", &[PLUGIN]).unwrap();
        assert!(config.blocks[0].debug);
        assert!(!config.blocks[1].debug);
        assert!(config.debug(), "debug logs are process-wide");
    }

    #[test]
    fn repeated_debug_is_accepted() {
        let config = config(". {\n debug\n debug\n}", &[PLUGIN]).unwrap();
        assert!(config.blocks[0].debug);
    }

    #[test]
    fn arguments_are_refused() {
        assert_eq!(
            config_error(". {\n debug on\n}", &[PLUGIN]),
            "Corefile:2: debug: takes no arguments, got 1"
        );
    }

    #[test]
    fn options_block_is_refused() {
        assert_eq!(
            config_error(". {\n debug {\n  pcap\n }\n}", &[PLUGIN]),
            "Corefile:3: debug: takes no options block"
        );
    }
}
