//! `drover doctor`: how jobs would be contained on this machine. It probes the machine itself,
//! as `serve` would; it does not talk to a node.

use crate::cli::{Cli, DoctorArgs};
use crate::exit;

/// `drover doctor`: runs locally, like `serve`: it probes this machine, not a node.
pub fn doctor(cli: &Cli, args: &DoctorArgs) -> anyhow::Result<u8> {
    let info = match drover_node::doctor(args.backend, args.memory, args.cpus, None) {
        Ok(info) => info,
        Err(err) => {
            eprintln!("drover: {err}");
            return Ok(exit::NODE);
        }
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print!("{}", crate::output::doctor_text(&info));
    }
    Ok(exit::OK)
}
