//! The service's configuration parser and validation (herald-server) over
//! arbitrary text: an error that names a field, or a configuration;
//! never a panic.

use herald_server::config::Config;

/// One input: the first byte chooses what the environment holds, the rest
/// is the TOML file.
pub fn run(data: &[u8]) {
    let Some((&env, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    // None, or every variable set to a value that is valid for some
    // (a URL, a listen address, keys) and not for the others.
    let value = match env % 4 {
        0 => None,
        1 => Some("sqlite::memory:"),
        2 => Some("127.0.0.1:0"),
        _ => Some("key-0123456789abcdef,key-fedcba9876543210"),
    };
    match Config::from_toml_str(text, &|_| value.map(str::to_owned)) {
        Ok(_) => {}
        Err(error) => {
            let shown = error.to_string();
            assert!(!shown.is_empty());
        }
    }
}
