//! scp over a private sshd: started by the benchmark (when OpenSSH's server
//! is installed) on 127.0.0.1 and a free port, with its own host key,
//! configuration and authorized key in the scratch folder, as the current
//! user; never the system's sshd, and nothing is installed.
//!
//! The sender's CPU and memory come from GNU time around `scp`; the
//! receiver's CPU is what sshd's per-connection processes used (the growth
//! of the listening sshd's `cutime + cstime` in `/proc/PID/stat`, counted
//! once it has reaped them); their peak memory is not measured.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use localstream_testkit::files::Scratch;
use localstream_testkit::measure::{Usage, read_usage};
use localstream_testkit::procs::{
    Context, Logged, all_succeeded, free_port, log_file, wait_all, wait_listening,
};

use crate::tools::{Run, timeout};
use crate::{Bench, Res};

/// The cipher asked of scp: the fast AES-GCM of OpenSSH.
pub const CIPHER: &str = "aes128-gcm@openssh.com";

/// A running private sshd.
#[derive(Debug)]
pub struct Ssh {
    /// The listening sshd (killed with its children on drop).
    proc: Option<Logged>,
    pid: u32,
    port: u16,
    key: PathBuf,
    user: String,
}

impl Ssh {
    /// Starts it, or says why not.
    pub fn start(src: &Scratch, logs: &Path) -> Result<Ssh, String> {
        let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .ok_or(
                "no sshd on this machine (OpenSSH server, Debian package openssh-server, \
                 is not installed; the benchmark does not install or start a system sshd)",
            )?;
        for tool in ["ssh-keygen", "scp"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !found {
                return Err(format!("{tool} is not installed"));
            }
        }
        let user = std::env::var("USER")
            .ok()
            .or_else(|| localstream_testkit::stdout_of(Command::new("id").arg("-un")))
            .ok_or("cannot tell the user name")?;
        let dir = src.path("ssh");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let host_key = dir.join("host_ed25519");
        let key = dir.join("client_ed25519");
        for k in [&host_key, &key] {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(k)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .with_context(|| "running ssh-keygen".to_string())?;
            if !st.success() {
                return Err(format!("ssh-keygen failed ({st})"));
            }
        }
        let authorized = dir.join("authorized_keys");
        fs::copy(key.with_extension("pub"), &authorized)
            .with_context(|| format!("writing {}", authorized.display()))?;
        let port = free_port()?;
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PidFile none\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 AllowUsers {user}\nCiphers {CIPHER}\n",
                host_key.display(),
                authorized.display()
            ),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        let log = logs.join("sshd.out");
        let mut cmd = Command::new(sshd);
        cmd.args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null());
        let mut p = Logged::spawn("sshd", cmd, log_file(&log)?, &log)?;
        if let Err(e) = wait_listening(
            &mut p,
            port,
            Duration::from_secs(10),
            Duration::from_millis(5),
        ) {
            return Err(format!(
                "the private sshd did not start: {e}{}",
                p.abandon()
            ));
        }
        let pid = p.pid();
        let ssh = Ssh {
            proc: Some(p),
            pid,
            port,
            key,
            user,
        };
        // One untimed login: the host key is accepted, the binaries cached.
        let probe = Command::new("ssh")
            .args(ssh.options("-p"))
            .arg(format!("{}@127.0.0.1", ssh.user))
            .arg("true")
            .stdin(Stdio::null())
            .output()
            .with_context(|| "running ssh".to_string())?;
        if !probe.status.success() {
            return Err(format!(
                "cannot log in to the private sshd: {}",
                String::from_utf8_lossy(&probe.stderr).trim()
            ));
        }
        Ok(ssh)
    }

    /// For the report.
    pub fn about(&self) -> String {
        format!(
            "private sshd on 127.0.0.1:{} (pid {}), scp -c {CIPHER}",
            self.port, self.pid
        )
    }

    /// The client options (`port_flag`: `-P` for scp, `-p` for ssh).
    fn options(&self, port_flag: &str) -> Vec<String> {
        [
            port_flag.to_string(),
            self.port.to_string(),
            "-i".into(),
            self.key.display().to_string(),
            "-c".into(),
            CIPHER.into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
        .into()
    }

    /// sshd's reaped children's CPU seconds so far.
    fn children_cpu(&self) -> Option<f64> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        // After the comm: state(3) ... utime(14) stime(15) cutime(16) cstime(17).
        let f: Vec<&str> = rest.split_whitespace().collect();
        let cu: f64 = f.get(13)?.parse().ok()?;
        let cs: f64 = f.get(14)?.parse().ok()?;
        let hz = localstream_testkit::stdout_of(Command::new("getconf").arg("CLK_TCK"))
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(100.0);
        Some((cu + cs) / hz)
    }

    /// `scp src user@127.0.0.1:out`.
    pub fn scp(&self, bench: &Bench, src: &Path, out: &Path) -> Res<Run> {
        let before = self.children_cpu();
        let mut cmd = bench.timed("scp-send", "scp");
        cmd.arg("-q").args(self.options("-P")).arg(src).arg(format!(
            "{}@127.0.0.1:{}",
            self.user,
            out.display()
        ));
        let log = bench.log("scp-send", "out");
        let bytes = fs::metadata(src).map_or(0, |m| m.len());
        let start = Instant::now();
        let p = Logged::spawn("scp", cmd, log_file(&log)?, &log)?;
        let exited = wait_all(vec![p], timeout(bytes, 1))?;
        let end = all_succeeded(&exited, "scp transfer")?;
        // sshd reaps its session process right after scp sees it exit.
        let mut recv_cpu = None;
        for _ in 0..100 {
            recv_cpu = match (before, self.children_cpu()) {
                (Some(b), Some(a)) if a > b => Some(a - b),
                _ => None,
            };
            if recv_cpu.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Run {
            wall: (end - start).as_secs_f64(),
            send: read_usage(&bench.log("scp-send", "time")),
            recv: recv_cpu.map(|cpu| Usage {
                wall: 0.0,
                user: cpu,
                sys: 0.0,
                max_rss_kib: 0,
            }),
        })
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        if let Some(p) = self.proc.take() {
            let _ = p.abandon();
        }
    }
}
