//! Zed extension for Blazedit: launches `blazedit-lsp` (found on PATH, or at
//! `lsp.blazedit.binary.path`) and forwards the `lsp.blazedit` settings to it.
//!
//! Zed has no free-text prompt: instructions come from an instruction comment in the
//! file (`# AI: add type hints`) or from the configured presets, both offered by the
//! server as "AI edit whole file..." code actions (docs/editors.md).
use zed_extension_api::{self as zed, serde_json, settings::LspSettings, LanguageServerId, Result};

/// The id under `[language_servers.*]` in extension.toml and under `lsp` in Zed settings.
const SERVER_ID: &str = "blazedit";
/// The console script installed by `pip install blazedit-lsp`.
const SERVER_BINARY: &str = "blazedit-lsp";

struct BlazeditExtension;

impl BlazeditExtension {
    /// `lsp.blazedit` from the user's settings (defaults when absent or unreadable).
    fn settings(worktree: &zed::Worktree) -> LspSettings {
        LspSettings::for_worktree(SERVER_ID, worktree).unwrap_or_default()
    }

    /// The server configuration: `initialization_options` if given, else `settings`.
    fn server_config(worktree: &zed::Worktree) -> Option<serde_json::Value> {
        let settings = Self::settings(worktree);
        settings.initialization_options.or(settings.settings)
    }
}

impl zed::Extension for BlazeditExtension {
    fn new() -> Self {
        BlazeditExtension
    }

    fn language_server_command(
        &mut self,
        language_server_id: &LanguageServerId,
        worktree: &zed::Worktree,
    ) -> Result<zed::Command> {
        if language_server_id.as_ref() != SERVER_ID {
            return Err(format!("unknown language server: {language_server_id}"));
        }
        let binary = Self::settings(worktree).binary.unwrap_or_default();
        let command = match binary.path {
            Some(path) => path,
            None => worktree.which(SERVER_BINARY).ok_or_else(|| {
                format!(
                    "{SERVER_BINARY} was not found on PATH: install it (pip install blazedit-lsp) \
                     or set lsp.{SERVER_ID}.binary.path in your Zed settings"
                )
            })?,
        };
        let mut env = worktree.shell_env();
        env.extend(binary.env.unwrap_or_default());
        Ok(zed::Command {
            command,
            args: binary.arguments.unwrap_or_default(),
            env,
        })
    }

    fn language_server_initialization_options(
        &mut self,
        _language_server_id: &LanguageServerId,
        worktree: &zed::Worktree,
    ) -> Result<Option<serde_json::Value>> {
        Ok(Self::server_config(worktree))
    }

    fn language_server_workspace_configuration(
        &mut self,
        _language_server_id: &LanguageServerId,
        worktree: &zed::Worktree,
    ) -> Result<Option<serde_json::Value>> {
        // The server reads the section "blazedit" (workspace/configuration, didChangeConfiguration).
        Ok(Self::server_config(worktree).map(|config| serde_json::json!({ SERVER_ID: config })))
    }
}

zed::register_extension!(BlazeditExtension);
