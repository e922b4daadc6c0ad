//! `root PATH`: the directory that relative paths of the other plugins in the
//! server block (zone files, keys, certificates) start from, as CoreDNS's root
//! sets it. A relative PATH is taken from the current directory.
//!
//! As in CoreDNS, a PATH that does not exist is accepted with a warning (the
//! directory may appear later), while one that cannot be checked at all
//! (a component that is a file, no permission) is an error. No handler.

use std::io::ErrorKind;
use std::path::PathBuf;

use oxidns_server::{ConfigError, PluginEntry, Setup};

pub const PLUGIN: PluginEntry = PluginEntry {
    name: "root",
    setup,
};

fn setup(setup: &mut Setup<'_>) -> Result<(), ConfigError> {
    let directive = setup.single()?;
    directive.no_block()?;
    let path = directive.args_between(1, 1)?[0].text.clone();
    if let Err(e) = std::fs::metadata(&path) {
        if e.kind() != ErrorKind::NotFound {
            return Err(directive.error(format!("unable to access root path '{path}': {e}")));
        }
        tracing::warn!(target: "plugin/root", "Root path does not exist: {path}");
    }
    let root = match std::env::current_dir() {
        Ok(cwd) => cwd.join(&path),
        Err(_) => PathBuf::from(&path),
    };
    setup.settings().root = root;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::path::Path;

    use oxidns_server::test_util::{config, config_error};

    thread_local! {
        /// What the probe saw of the block's settings, for the test on this thread.
        static SEEN: RefCell<Option<(PathBuf, PathBuf, PathBuf)>> = const { RefCell::new(None) };
    }

    /// A plugin set up after `root`: notes the root and how it resolves paths.
    const PROBE: PluginEntry = PluginEntry {
        name: "probe",
        setup: |setup| {
            let root = setup.settings().root.clone();
            let relative = setup.resolve_path("db.example.org");
            let absolute = setup.resolve_path("/etc/db.example.org");
            SEEN.with(|seen| *seen.borrow_mut() = Some((root, relative, absolute)));
            Ok(())
        },
    };

    /// The root, a resolved relative path and a resolved absolute path after `corefile`.
    fn seen(corefile: &str) -> (PathBuf, PathBuf, PathBuf) {
        SEEN.with(|seen| seen.borrow_mut().take());
        config(corefile, &[PLUGIN, PROBE]).unwrap_or_else(|e| panic!("{}", e[0]));
        SEEN.with(|seen| seen.borrow_mut().take())
            .expect("the probe ran")
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("oxidns-root-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn existing_directory_becomes_the_root() {
        let dir = temp_dir("existing");
        let (root, _, _) = seen(&format!(". {{\n root {}\n probe\n}}", dir.display()));
        assert_eq!(root, dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn relative_paths_of_other_plugins_start_from_the_root() {
        let dir = temp_dir("relative");
        let (_, relative, absolute) = seen(&format!(". {{\n root {}\n probe\n}}", dir.display()));
        assert_eq!(relative, dir.join("db.example.org"));
        assert_eq!(absolute, Path::new("/etc/db.example.org"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn relative_root_starts_from_the_current_directory() {
        let (root, _, _) = seen(". {\n root zones\n probe\n}");
        assert_eq!(root, std::env::current_dir().unwrap().join("zones"));
    }

    #[test]
    fn without_root_paths_start_from_the_current_directory() {
        let (root, _, _) = seen(". {\n probe\n}");
        assert_eq!(root, std::env::current_dir().unwrap());
    }

    #[test]
    fn missing_directory_is_accepted() {
        let missing = std::env::temp_dir().join("oxidns-root-highly-unlikely-to-exist");
        let (root, _, _) = seen(&format!(". {{\n root {}\n probe\n}}", missing.display()));
        assert_eq!(root, missing);
    }

    #[cfg(unix)]
    #[test]
    fn path_through_a_file_is_refused() {
        let dir = temp_dir("file");
        let file = dir.join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        let path = file.join("zones");
        assert_eq!(
            config_error(&format!(". {{\n root {}\n}}", path.display()), &[PLUGIN]),
            format!(
                "Corefile:2: root: unable to access root path '{}': Not a directory (os error 20)",
                path.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn root_without_path_is_refused() {
        assert_eq!(
            config_error(". {\n root\n}", &[PLUGIN]),
            "Corefile:2: root: takes 1 argument(s), got 0"
        );
    }

    #[test]
    fn two_paths_are_refused() {
        assert_eq!(
            config_error(". {\n root /a /b\n}", &[PLUGIN]),
            "Corefile:2: root: takes 1 argument(s), got 2"
        );
    }

    #[test]
    fn options_block_is_refused() {
        assert_eq!(
            config_error(". {\n root /tmp {\n  x\n }\n}", &[PLUGIN]),
            "Corefile:3: root: takes no options block"
        );
    }

    #[test]
    fn second_root_in_a_block_is_refused() {
        assert_eq!(
            config_error(". {\n root /tmp\n root /var\n}", &[PLUGIN]),
            "Corefile:3: root: this plugin can only be used once per server block"
        );
    }

    #[test]
    fn root_applies_to_its_own_block_only() {
        SEEN.with(|seen| seen.borrow_mut().take());
        let dir = temp_dir("own-block");
        config(
            &format!(
                "a.org {{\n root {}\n}}\nb.org {{\n probe\n}}",
                dir.display()
            ),
            &[PLUGIN, PROBE],
        )
        .unwrap();
        let (root, _, _) = SEEN.with(|seen| seen.borrow_mut().take()).unwrap();
        assert_eq!(root, std::env::current_dir().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
