//! Stage networking: `lo` up in the holder's new netns, host port listeners
//! forwarded into it, and egress through pasta.
//!
//! A socket stays in the network namespace where it was created: listeners
//! opened before `unshare(CLONE_NEWNET)` keep accepting host connections,
//! and connections made afterwards reach `127.0.0.1` inside. That is a
//! rootless port forwarder without a helper binary.
//!
//! A published port whose host port differs from its container port is
//! also forwarded inside the namespace (loopback HOST -> CTR): steps that
//! run on the host's root stand for processes on a Harness Cloud VM, which
//! reach a service at `localhost:HOST`.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};

use super::spec::PortForward;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("host port {port} is already in use; pick another with -p HOSTPORT:CTRPORT")]
    PortInUse { port: u16 },
    #[error("failed to listen on host port {port}")]
    Listen {
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("failed to bring up the loopback interface")]
    LoopbackUp(#[source] io::Error),
    #[error("failed to listen on {addr} inside the stage's network namespace (forwarding host port {port})")]
    ListenInside {
        addr: SocketAddr,
        port: u16,
        #[source]
        source: io::Error,
    },
}

/// Opens the host-side listeners (call before unsharing the netns).
pub fn bind_listeners(ports: &[PortForward]) -> Result<Vec<(TcpListener, PortForward)>, NetError> {
    ports
        .iter()
        .map(|fwd| {
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, fwd.host_port))
                .map(|l| (l, *fwd))
                .map_err(|source| match source.kind() {
                    io::ErrorKind::AddrInUse => NetError::PortInUse {
                        port: fwd.host_port,
                    },
                    _ => NetError::Listen {
                        port: fwd.host_port,
                        source,
                    },
                })
        })
        .collect()
}

/// Opens loopback listeners on each host port that differs from its
/// container port, inside the current (new) netns: `127.0.0.1:HOST`, and
/// `[::1]:HOST` when the namespace has IPv6. Equal ports need none (the
/// service itself listens there).
pub fn bind_inside_listeners(
    ports: &[PortForward],
) -> Result<Vec<(TcpListener, PortForward)>, NetError> {
    let mut out = Vec::new();
    for fwd in ports.iter().filter(|f| f.host_port != f.container_port) {
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, fwd.host_port));
        let listener = TcpListener::bind(v4).map_err(|source| NetError::ListenInside {
            addr: v4,
            port: fwd.host_port,
            source,
        })?;
        out.push((listener, *fwd));
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, fwd.host_port));
        match TcpListener::bind(v6) {
            Ok(listener) => out.push((listener, *fwd)),
            // No IPv6 in this kernel or namespace: 127.0.0.1 is enough.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT)
                ) => {}
            Err(source) => {
                return Err(NetError::ListenInside {
                    addr: v6,
                    port: fwd.host_port,
                    source,
                })
            }
        }
    }
    Ok(out)
}

/// Forwards every accepted connection (from the host, or from inside for
/// [`bind_inside_listeners`]) to `127.0.0.1:container_port` of the current
/// (new) netns, one thread per direction.
pub fn spawn_forwarders(listeners: Vec<(TcpListener, PortForward)>) {
    for (listener, fwd) in listeners {
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || forward(conn, fwd.container_port));
            }
        });
    }
}

fn forward(host: TcpStream, port: u16) {
    let Ok(inner) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return;
    };
    let (Ok(host2), Ok(inner2)) = (host.try_clone(), inner.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || pump(host2, inner2));
    pump(inner, host);
    let _ = up.join();
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// `struct ifreq` with the flags member (the kernel reads 40 bytes).
#[repr(C)]
struct IfReqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `ip link set lo up` through SIOCSIFFLAGS.
pub fn loopback_up() -> Result<(), NetError> {
    loopback_up_raw().map_err(|e| NetError::LoopbackUp(e.into()))
}

/// [`loopback_up`] in raw system calls through rustix (no allocation, no
/// errno), so a helper sharing init's memory may call it (`netns`).
pub(crate) fn loopback_up_raw() -> rustix::io::Result<()> {
    use rustix::ioctl::{ioctl, Updater};
    use rustix::net::{socket_with, AddressFamily, SocketFlags, SocketType};
    const GET: rustix::ioctl::Opcode = libc::SIOCGIFFLAGS as rustix::ioctl::Opcode;
    const SET: rustix::ioctl::Opcode = libc::SIOCSIFFLAGS as rustix::ioctl::Opcode;
    let sock = socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let mut req = IfReqFlags {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: both opcodes take a `struct ifreq`, which IfReqFlags lays out.
    unsafe {
        ioctl(&sock, Updater::<GET, IfReqFlags>::new(&mut req))?;
        req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        ioctl(&sock, Updater::<SET, IfReqFlags>::new(&mut req))?;
    }
    Ok(())
}

/// Which egress helper to use: `$CORRAL_EGRESS` (`pasta`, `slirp4netns`
/// or `none`) when set, else the first installed of slirp4netns, pasta.
/// slirp4netns comes first because the pasta Debian 12 ships (passt
/// 2023-03) resends TCP data the namespace already received when it is slow
/// to ack, which corrupts streams on a loaded runner.
pub fn egress_helper() -> Option<&'static str> {
    match std::env::var("CORRAL_EGRESS").as_deref() {
        Ok("none") => return None,
        Ok("pasta") => return Some("pasta"),
        Ok("slirp4netns") => return Some("slirp4netns"),
        _ => {}
    }
    ["slirp4netns", "pasta"]
        .into_iter()
        .find(|p| super::idmap::find_in_path(p).is_some())
}

/// Keeps an egress helper alive; dropping it stops the helper.
#[derive(Debug)]
pub struct EgressGuard {
    child: Option<std::process::Child>,
    /// slirp4netns exits when this pipe closes (also when we die).
    exit_pipe: Option<std::os::fd::OwnedFd>,
}

impl Drop for EgressGuard {
    fn drop(&mut self) {
        let closed_pipe = self.exit_pipe.take().is_some();
        if let Some(child) = &mut self.child {
            if !closed_pipe {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// Gives the netns of `pid` a route out; the helper stays our child and
/// stops when the returned guard is dropped or we die.
pub fn start_egress(pid: i32) -> Result<EgressGuard, String> {
    match egress_helper() {
        Some("pasta") => start_pasta(pid),
        Some(_) => start_slirp4netns(pid),
        None => {
            Err("neither pasta nor slirp4netns is usable; the sandbox has only loopback".into())
        }
    }
}

/// pasta in the foreground as our child: given a PID it never notices that
/// the namespace is gone, so it dies with us (PDEATHSIG) or with the guard.
/// Ready once the namespace has a default route.
fn start_pasta(pid: i32) -> Result<EgressGuard, String> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("pasta");
    cmd.args(["--config-net", "--quiet", "--foreground"]);
    cmd.args(["-t", "none", "-u", "none", "-T", "none", "-U", "none"]);
    // pasta drops root to nobody, who may not enter root's user namespace.
    if rustix::process::geteuid().is_root() {
        cmd.args(["--runas", "0"]);
    }
    cmd.arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Out of a terminal's ^C: the stage's route out must outlive its
        // orderly teardown.
        .process_group(0);
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
    let child = super::launch::on_spawner(move || cmd.spawn())
        .and_then(|r| r)
        .map_err(|e| format!("failed to run pasta: {e}"))?;
    let mut guard = EgressGuard {
        child: Some(child),
        exit_pipe: None,
    };
    let routes = format!("/proc/{pid}/net/route");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let table = std::fs::read_to_string(&routes).unwrap_or_default();
        if table
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some("00000000"))
        {
            return Ok(guard);
        }
        if let Some(child) = &mut guard.child {
            if let Ok(Some(status)) = child.try_wait() {
                guard.child = None;
                return Err(format!("pasta failed ({status})"));
            }
        }
        if std::time::Instant::now() > deadline {
            return Err("pasta did not configure the network within 5 s".into());
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
}

fn start_slirp4netns(pid: i32) -> Result<EgressGuard, String> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| format!("pipe: {e}"))
    };
    let (ready_r, ready_w) = pipe()?;
    let (exit_r, exit_w) = pipe()?;
    let (ready_fd, exit_fd) = (ready_w.as_raw_fd(), exit_r.as_raw_fd());
    let mut cmd = Command::new("slirp4netns");
    cmd.args([
        "--configure",
        "--mtu=65520",
        "--disable-host-loopback",
        "--ready-fd=3",
        "--exit-fd=4",
    ])
    .arg(format!("--userns-path=/proc/{pid}/ns/user"))
    .arg(pid.to_string())
    .arg("tap0")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    // Nobody would drain a pipe for the helper's whole life.
    .stderr(Stdio::null())
    // Out of a terminal's ^C, as pasta.
    .process_group(0);
    // SAFETY: only dup2 (async-signal-safe) between fork and exec; the
    // sources are close-on-exec fds above 4 or moved out of the way first.
    unsafe {
        cmd.pre_exec(move || {
            let ready = libc::fcntl(ready_fd, libc::F_DUPFD_CLOEXEC, 10);
            let exit = libc::fcntl(exit_fd, libc::F_DUPFD_CLOEXEC, 10);
            if ready < 0 || exit < 0 || libc::dup2(ready, 3) < 0 || libc::dup2(exit, 4) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("failed to run slirp4netns: {e}"))?;
    drop(ready_w);
    drop(exit_r);
    let mut byte = [0u8; 1];
    let mut ready = std::fs::File::from(ready_r);
    if ready.read(&mut byte).unwrap_or(0) == 0 {
        let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
        return Err(format!("slirp4netns failed ({status})"));
    }
    Ok(EgressGuard {
        child: Some(child),
        exit_pipe: Some(exit_w),
    })
}
