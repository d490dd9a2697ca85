//! A real SMTP server for the mail tests: `../tests/smtp/sink.py` (aiosmtpd)
//! on a loopback port, each accepted message parsed (MIME, by Python's
//! `email` package) into a JSON file the tests read back.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A running SMTP sink; killed on drop.
pub struct Sink {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where it stores what it accepts.
    pub dir: tempfile::TempDir,
    child: Child,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/smtp/sink.py")
}

impl Sink {
    /// A sink on a free port with `faults` (see the script's flags).
    pub fn start(faults: &[&str]) -> Sink {
        Sink::spawn(0, tempfile::tempdir().unwrap(), faults)
    }

    /// A sink on `port`, storing into `dir` (a restart of a stopped sink).
    pub fn spawn(port: u16, dir: tempfile::TempDir, faults: &[&str]) -> Sink {
        let mut child = Command::new("python3")
            .arg(script())
            .arg("--dir")
            .arg(dir.path())
            .arg("--port")
            .arg(port.to_string())
            .args(faults)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs tests/smtp/sink.py (pip install aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the SMTP sink did not start: {line:?}"));
        Sink { port, dir, child }
    }

    /// `smtp://127.0.0.1:PORT` (plain, as loopback test servers are).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    /// Every accepted message: `mail_from`, `rcpt_tos`, `headers`, `text`, `html`.
    pub fn messages(&self) -> Vec<Value> {
        let mut found: Vec<(u64, Value)> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| {
                let path = e.ok()?.path();
                let n = path
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()?;
                let text = std::fs::read_to_string(&path).ok()?;
                Some((n, serde_json::from_str(&text).ok()?))
            })
            .collect();
        found.sort_by_key(|(n, _)| *n);
        found.into_iter().map(|(_, v)| v).collect()
    }

    /// Stops the server; its stored messages stay in the returned folder.
    pub fn stop(mut self) -> (u16, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (self.port, dir)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
