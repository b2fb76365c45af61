//! `drover web`: the web page's login link, printed or opened in a browser.

use std::io::{IsTerminal, Write};

use anyhow::Context;

use super::{client, data_dir};
use crate::cli::{Cli, WebArgs};
use crate::exit;

/// `drover web`: the login link, `URL/?token=…`. Opening it makes the node set its login cookie
/// and send the browser on to the page without the token in the address.
pub fn web(cli: &Cli, args: &WebArgs) -> anyhow::Result<u8> {
    let client = client(cli)?;
    let token = client.token().ok_or_else(|| {
        anyhow::anyhow!(
            "no token for {}: the CLI finds a local node's in its data dir; for another node set DROVER_TOKEN or --token-file",
            client.base()
        )
    })?;
    let link = format!(
        "{}/?token={}",
        client.base(),
        drover_node::auth::percent_encode(token)
    );
    if cli.json {
        crate::output::json(&serde_json::json!({ "url": link }))?;
        return Ok(exit::OK);
    }
    if !args.open {
        println!("{link}");
        if std::io::stderr().is_terminal() {
            eprintln!("open this link in a browser to log it in; it is as secret as the token");
        }
        return Ok(exit::OK);
    }
    // A command line is visible to every user (ps), so the opener gets a private file that
    // sends the browser on, as Jupyter does.
    let dir = data_dir(cli)?;
    let dir = if dir.is_dir() {
        dir
    } else {
        std::env::temp_dir()
    };
    let file = dir.join("web-login.html");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&file);
        let mut out = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&file)
            .with_context(|| format!("cannot write {}", file.display()))?;
        let escaped = link.replace('&', "&amp;").replace('"', "&quot;");
        writeln!(
            out,
            "<!doctype html><meta http-equiv=\"refresh\" content=\"0;url={escaped}\"><a href=\"{escaped}\">drover</a>"
        )?;
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let status = std::process::Command::new(opener)
        .arg(&file)
        .status()
        .with_context(|| {
            format!("cannot run {opener}; run `drover web` and open the link by hand")
        })?;
    anyhow::ensure!(
        status.success(),
        "{opener} failed ({status}); run `drover web` and open the link by hand"
    );
    Ok(exit::OK)
}
