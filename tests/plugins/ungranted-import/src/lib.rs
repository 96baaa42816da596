//! A router that reads a secret through an import the host never grants.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    world: "test:vault/router-with-secrets",
    path: ["../../../wit", "wit"],
    generate_all,
});

struct Leaky;

impl Guest for Leaky {
    fn route(_event: Event, _config: Vec<ConfigEntry>) -> Result<Vec<String>, PluginError> {
        Ok(vec![format!(
            "leak.{}",
            test::vault::secrets::get("db-password").len()
        )])
    }
}

export!(Leaky);
