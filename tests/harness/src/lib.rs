//! vglet's VM test harness: boots Debian's stock kernel in QEMU over the host's root
//! filesystem and runs one shell command in the guest, where device-mapper, LVM activation,
//! mkfs on LVs, mounts and emulated NVDIMMs are real (the CI kernel has no device-mapper).
//!
//! ```no_run
//! use std::time::Duration;
//! let out = vglet_vmh::Vm::new("e2e")
//!     .mem_mib(1536)
//!     .fresh_disk("d1", 1 << 30)
//!     .modules(["dm_mod"])
//!     .timeout(Duration::from_secs(300))
//!     .run("pvcreate /dev/vda && vgcreate vg1 /dev/vda")?;
//! assert_eq!(out.exit_code, 0);
//! # Ok::<(), vglet_vmh::HarnessError>(())
//! ```
//!
//! How it works: the kernel boots (PVH, no firmware) with a tiny initramfs that mounts the host
//! root read-only over 9p with a tmpfs overlay on top and runs `guest/init.sh` from the host as
//! PID 1. The job (command, environment, modules, shares) goes through a per-run read-write 9p
//! share, and so does the exit status. The guest sees the host's binaries, including
//! `target/*`, at the same paths. See README.md beside this crate.

use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod cache;
mod host;
mod lock;
mod qmp;

pub use host::{Accel, HostSupport, check_host};
pub use lock::{VmLock, vm_lock};

/// How long QEMU and the guest kernel get to eject a hot-unplugged disk (TCG is slow).
const UNPLUG_TIMEOUT: Duration = Duration::from_secs(60);
/// Line the guest prints right before it starts the command (see guest/init.sh).
const READY_MARKER: &str = "vglet-vm: ready at ";
/// Size QEMU reserves at the start of an emulated NVDIMM for its label area.
const NVDIMM_LABEL_SIZE: u64 = 128 << 10;
/// Guest-physical alignment of emulated NVDIMMs: what fsdax needs on every architecture.
const NVDIMM_ALIGN: u64 = 16 << 20;

/// Everything that can go wrong around the guest command (its own failure is an exit code).
///
/// `Debug` prints the same readable message as `Display`, so `.expect()`/`.unwrap()` in tests
/// show the console tail and the hint to run util/deps.sh.
#[derive(thiserror::Error)]
pub enum HarnessError {
    /// The host lacks qemu, a kernel, busybox-static, ...
    #[error(
        "this machine cannot boot vglet test guests:\n{}\nInstall the packages with util/deps.sh \
         (Debian 12, as root), or set VGLET_SKIP_VM=1 to skip the VM tests.",
        problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
    )]
    HostMissing { problems: Vec<String> },
    /// The `Vm` description is unusable (bad name, missing image, ...).
    #[error("invalid VM configuration: {0}")]
    Config(String),
    /// Preparing the kernel or initramfs failed.
    #[error("guest kernel: {0}")]
    Kernel(String),
    /// A host-side I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The guest did not finish in time; QEMU was killed.
    #[error(
        "guest `{name}` timed out after {after:?}; qemu killed. Last console lines:\n{console_tail}"
    )]
    Timeout {
        name: String,
        after: Duration,
        console_tail: String,
    },
    /// QEMU ended but the guest never reported a status (kernel panic, init failure, qemu
    /// error, killed).
    #[error(
        "guest `{name}` died without reporting an exit status (qemu: {qemu_status}). Last \
         console lines:\n{console_tail}"
    )]
    NoStatus {
        name: String,
        qemu_status: String,
        console_tail: String,
    },
    /// The guest booted but could not prepare the command (module load, share mount, ...).
    #[error("guest `{name}` setup failed: {message}. Last console lines:\n{console_tail}")]
    GuestSetup {
        name: String,
        message: String,
        console_tail: String,
    },
}

impl fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

/// True inside a harness guest (`VGLET_IN_GUEST=1`, exported by the guest init).
pub fn in_guest() -> bool {
    std::env::var_os("VGLET_IN_GUEST").is_some_and(|v| v == "1")
}

/// True when VM tests should be skipped (`VGLET_SKIP_VM=1`); prints "skipped" with `what`.
///
/// Tests must *fail*, not skip, when the host lacks qemu or a kernel: only this explicit
/// opt-out skips.
pub fn skip_vm_tests(what: &str) -> bool {
    let skip = std::env::var_os("VGLET_SKIP_VM").is_some_and(|v| v == "1");
    if skip {
        eprintln!("{what}: skipped (VGLET_SKIP_VM=1)");
    }
    skip
}

/// Result of a guest run.
#[derive(Clone, Debug)]
pub struct VmOutcome {
    /// The guest command's exit status (`bash -c` semantics: 128+N for a signal).
    pub exit_code: i32,
    /// Host wall time from starting QEMU to its exit.
    pub duration: Duration,
    /// Host wall time from starting QEMU until the guest was about to run the command.
    pub boot: Option<Duration>,
    /// Everything the guest printed on its console (kernel, init, command), without `\r`.
    pub console: String,
}

impl VmOutcome {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// The MAC address of the card of a [`Vm::udp_link`] that listens on `port`.
pub fn link_mac(port: u16) -> String {
    format!("52:54:00:00:{:02x}:{:02x}", port >> 8, port & 0xff)
}

#[derive(Clone, Debug)]
enum DiskSpec {
    Existing(PathBuf),
    Fresh { name: String, size: u64 },
    Shared(PathBuf),
}

#[derive(Clone, Debug)]
enum PmemSpec {
    Existing(PathBuf),
    Fresh { name: String, size: u64 },
}

/// Description of a guest; build it, then [`Vm::run`] or [`Vm::spawn`] (repeatedly if wanted:
/// each run gets fresh scratch disks).
#[derive(Clone, Debug)]
pub struct Vm {
    name: String,
    mem_mib: u64,
    cpus: u32,
    disks: Vec<DiskSpec>,
    pmems: Vec<PmemSpec>,
    shares: Vec<PathBuf>,
    modules: Vec<String>,
    udev: bool,
    env: Vec<(String, String)>,
    timeout: Duration,
    log_to: Option<PathBuf>,
    quiet: bool,
    kernel_args: Vec<String>,
    qemu_args: Vec<String>,
    guest_unplug: bool,
    links: Vec<UdpLink>,
    init_script: Option<PathBuf>,
}

/// A point-to-point Ethernet link to another guest over UDP on the host's loopback.
#[derive(Clone, Copy, Debug)]
struct UdpLink {
    local_port: u16,
    peer_port: u16,
}

impl Vm {
    /// A guest whose hostname is `name` (letters, digits, `-`): 1 GiB, 2 vCPUs, no disks,
    /// no udev, 600 s timeout.
    pub fn new(name: impl Into<String>) -> Self {
        Vm {
            name: name.into(),
            mem_mib: 1024,
            cpus: 2,
            disks: Vec::new(),
            pmems: Vec::new(),
            shares: Vec::new(),
            modules: Vec::new(),
            udev: false,
            env: Vec::new(),
            timeout: Duration::from_secs(600),
            log_to: None,
            quiet: false,
            kernel_args: Vec::new(),
            qemu_args: Vec::new(),
            guest_unplug: false,
            links: Vec::new(),
            init_script: None,
        }
    }

    /// The guest's PID-1 script (default: this harness's `guest/init.sh`), e.g. another
    /// checkout's, to prove that a clone elsewhere boots.
    pub fn init_script(mut self, path: impl Into<PathBuf>) -> Self {
        self.init_script = Some(path.into());
        self
    }

    /// Guest RAM in MiB (default 1024).
    pub fn mem_mib(mut self, mib: u64) -> Self {
        self.mem_mib = mib;
        self
    }

    /// Number of vCPUs (default 2).
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }

    /// Attaches an existing raw image as the next virtio disk (`/dev/vda`, `vdb`, ... in the
    /// order of `disk`/`fresh_disk`/`shared_disk` calls; serial = file stem).
    pub fn disk(mut self, path: impl AsRef<Path>) -> Self {
        self.disks
            .push(DiskSpec::Existing(path.as_ref().to_path_buf()));
        self
    }

    /// Attaches a new sparse raw image of `size` bytes, created in the run's scratch dir and
    /// deleted after the run; its virtio serial (`/dev/disk/by-id/virtio-<name>` with udev) is
    /// `name`.
    pub fn fresh_disk(mut self, name: impl Into<String>, size: u64) -> Self {
        self.disks.push(DiskSpec::Fresh {
            name: name.into(),
            size,
        });
        self
    }

    /// Attaches an existing raw image that another guest may use at the same time
    /// (`share-rw=on`, `cache=none`, `file.locking=off`). Must not be on tmpfs (O_DIRECT).
    pub fn shared_disk(mut self, path: impl AsRef<Path>) -> Self {
        self.disks
            .push(DiskSpec::Shared(path.as_ref().to_path_buf()));
        self
    }

    /// Attaches a file as an emulated NVDIMM (label area 128 KiB; a fresh one is label-less,
    /// see README). The file's size is the DIMM's size.
    pub fn pmem(mut self, path: impl AsRef<Path>) -> Self {
        self.pmems
            .push(PmemSpec::Existing(path.as_ref().to_path_buf()));
        self
    }

    /// Attaches a new zero-filled (sparse) NVDIMM backing file of `size` bytes from the run's
    /// scratch dir.
    pub fn fresh_pmem(mut self, name: impl Into<String>, size: u64) -> Self {
        self.pmems.push(PmemSpec::Fresh {
            name: name.into(),
            size,
        });
        self
    }

    /// Mounts the host directory `dir` read-write (9p, uncached) at the same path in the guest.
    pub fn share_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.shares.push(dir.as_ref().to_path_buf());
        self
    }

    /// Kernel modules `modprobe`d before the command (a failure aborts the run).
    pub fn modules<I, S>(mut self, modules: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.modules.extend(modules.into_iter().map(Into::into));
        self
    }

    /// One more module, see [`Vm::modules`].
    pub fn module(self, module: impl Into<String>) -> Self {
        self.modules([module])
    }

    /// Start systemd-udevd (+ trigger + settle) before the command. Without udev (default) the
    /// guest's lvm.conf gets `udev_sync = 0`, `udev_rules = 0` (in the throwaway overlay).
    pub fn udev(mut self, on: bool) -> Self {
        self.udev = on;
        self
    }

    /// Exports `key=value` for the guest command.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Kill the guest after this long (default 600 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Also write the console to this file (created/truncated).
    pub fn log_to(mut self, path: impl AsRef<Path>) -> Self {
        self.log_to = Some(path.as_ref().to_path_buf());
        self
    }

    /// Do not stream the console to stderr (it is still in [`VmOutcome::console`] and the
    /// `log_to` file).
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// Extra kernel command line argument (no spaces).
    pub fn kernel_arg(mut self, arg: impl Into<String>) -> Self {
        self.kernel_args.push(arg.into());
        self
    }

    /// Lets the guest command hot-unplug its own virtio disks, as if someone pulled them: it
    /// creates `/run/vglet-rc/unplug-req/<disk name>` (the `fresh_disk` name or the image's
    /// file stem), the host removes the device through QEMU's monitor (QMP `device_del`,
    /// ACPI PCI hot-unplug, the guest kernel ejects it) and answers in
    /// `/run/vglet-rc/unplug-done/<disk name>`: `ok`, or `error: ...`. The guest decides
    /// when, so the disk can vanish in the middle of a test. [`VmHandle::wait`] serves the
    /// requests; [`VmHandle::unplug_disk`] does it from the host directly.
    pub fn guest_unplug(mut self, on: bool) -> Self {
        self.guest_unplug = on;
        self
    }

    /// Joins this guest to another by a virtio network card whose frames travel as UDP
    /// datagrams on the host's loopback: this guest listens on `local_port` and sends to
    /// `peer_port`; the peer is built with the two ports swapped. No bridge, tap device or
    /// root on the host, and neither guest has to start first (UDP needs no connection),
    /// which is what two guests spawned back to back need. The guest command configures the
    /// card itself (load `virtio_net`; the MAC is `52:54:00:00:` + `local_port` in hex, so
    /// each end is told apart); use ports no one else on the host uses.
    pub fn udp_link(mut self, local_port: u16, peer_port: u16) -> Self {
        self.links.push(UdpLink {
            local_port,
            peer_port,
        });
        self
    }

    /// Extra QEMU argument, appended verbatim.
    pub fn qemu_arg(mut self, arg: impl Into<String>) -> Self {
        self.qemu_args.push(arg.into());
        self
    }

    /// Boots the guest, runs `bash -c <command>` in it and waits. Takes the VM lock for the
    /// whole run (see [`vm_lock`]).
    pub fn run(&self, command: &str) -> Result<VmOutcome, HarnessError> {
        self.spawn(command)?.wait()
    }

    /// Runs one test of the *current test binary* inside the guest:
    /// `<current_exe> --exact <test> --include-ignored --nocapture --test-threads=1`.
    ///
    /// The usual shape of an in-guest cargo test: a host-side `#[test]` calls this for a
    /// `#[test] #[ignore]` guest-side test that checks [`in_guest`] first. The guest sees the
    /// binary at the same path (the host root is shared), so it must be built before booting,
    /// which cargo test does anyway.
    pub fn run_test(&self, test: &str) -> Result<VmOutcome, HarnessError> {
        self.run(&test_command(test)?)
    }

    /// Boots the guest in the background. Guests spawned from one thread share the VM lock,
    /// so two guests of one test run at the same time; [`VmHandle::wait`] collects each.
    ///
    /// QEMU gets SIGKILL when the spawning *thread* exits, so wait from the thread that
    /// spawned (a dropped handle kills its guest too).
    pub fn spawn(&self, command: &str) -> Result<VmHandle, HarnessError> {
        if in_guest() {
            return Err(HarnessError::Config(
                "already inside a harness guest: nested guests are not supported".into(),
            ));
        }
        self.validate()?;
        let host = check_host()?;
        let lock = lock::lock_in(&host.cache_dir)?;
        let kernel = cache::vmlinux(&host)?;
        let initrd = cache::initramfs(&host)?;
        let work = WorkDir::new(&self.name)?;
        let rc_dir = work.path().join("rc");
        fs::create_dir_all(&rc_dir).map_err(io_err(format!("create {}", rc_dir.display())))?;
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        self.write_job(&rc_dir, &cwd, command)?;
        // The guest's fresh /tmp, /run and /dev/shm would hide a checkout (init.sh itself, the
        // test binaries, the cwd) that lies there on the host: expose those dirs again.
        let init = match &self.init_script {
            Some(p) => abs(p)?,
            None => host.guest_init.clone(),
        };
        let mut wanted = vec![init.clone(), cwd.clone()];
        wanted.extend(std::env::current_exe().ok());
        let expose = hidden_host_dirs(&wanted).map_err(HarnessError::Config)?;
        let expose_list: String = expose
            .iter()
            .map(|d| format!("{}\n", d.display()))
            .collect();
        for (file, text) in [
            ("expose", expose_list),
            ("init", format!("{}\n", init.display())),
        ] {
            let p = rc_dir.join(file);
            fs::write(&p, text).map_err(io_err(format!("write {}", p.display())))?;
        }

        let mut args: Vec<String> = vec![
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
            "-name".into(),
            self.name.clone(),
            "-smp".into(),
            self.cpus.to_string(),
            "-serial".into(),
            "stdio".into(),
            "-monitor".into(),
            "none".into(),
        ];
        match host.accel {
            Accel::Tcg => {
                // qemu64, not max: emulating max's vector extensions made exec, mkfs and hashing
                // slower (tests/harness/README.md has the figures). `VGLET_VM_TCG_CPU` picks
                // another model to measure against.
                let cpu = std::env::var("VGLET_VM_TCG_CPU").unwrap_or_else(|_| "qemu64".into());
                args.extend([
                    "-accel".into(),
                    "tcg,thread=multi".into(),
                    "-cpu".into(),
                    cpu,
                ])
            }
            Accel::Kvm => args.extend(["-accel", "kvm", "-cpu", "host"].map(String::from)),
        }
        let fsdev = |args: &mut Vec<String>, id: &str, path: &Path, extra: &str| {
            args.push("-fsdev".into());
            args.push(format!(
                "local,id={id},path={},security_model=none{extra}",
                qemu_escape(path)
            ));
            args.push("-device".into());
            args.push(format!("virtio-9p-pci,fsdev={id},mount_tag={id}"));
        };
        fsdev(
            &mut args,
            "hostroot",
            Path::new("/"),
            ",readonly=on,multidevs=remap",
        );
        fsdev(&mut args, "vglet_rc", &rc_dir, "");
        for (i, dir) in self.shares.iter().enumerate() {
            fsdev(&mut args, &format!("vglet_s{i}"), &abs(dir)?, "");
        }

        let mut disk_ids = Vec::new();
        for (i, d) in self.disks.iter().enumerate() {
            let (path, serial, shared) = match d {
                DiskSpec::Existing(p) => (abs(p)?, serial_of(p), false),
                DiskSpec::Shared(p) => (abs(p)?, serial_of(p), true),
                DiskSpec::Fresh { name, size } => (
                    work.sparse_file(&format!("{name}.img"), *size)?,
                    name.clone(),
                    false,
                ),
            };
            let (cache, extra, dev_extra) = if shared {
                // cache=none = O_DIRECT: both guests see each other's writes immediately.
                ("none", ",file.locking=off", ",share-rw=on")
            } else {
                ("unsafe", "", "")
            };
            args.push("-drive".into());
            args.push(format!(
                "file={},if=none,id=d{i},format=raw,cache={cache},aio=threads{extra}",
                qemu_escape(&path)
            ));
            args.push("-device".into());
            // The id names the device for QMP device_del (hot-unplug).
            args.push(format!(
                "virtio-blk-pci,id=vd{i},drive=d{i},serial={serial}{dev_extra}"
            ));
            disk_ids.push((serial, format!("vd{i}")));
        }
        for (i, l) in self.links.iter().enumerate() {
            args.push("-netdev".into());
            args.push(format!(
                "socket,id=n{i},udp=127.0.0.1:{},localaddr=127.0.0.1:{}",
                l.peer_port, l.local_port
            ));
            args.push("-device".into());
            args.push(format!(
                "virtio-net-pci,netdev=n{i},mac={}",
                link_mac(l.local_port)
            ));
        }
        let qmp_socket = if self.guest_unplug {
            let sock = work.path().join("qmp.sock");
            // sun_path holds 108 bytes including the NUL.
            if sock.as_os_str().len() > 100 {
                return Err(HarnessError::Config(format!(
                    "QMP socket path {} is too long for a unix socket: set VGLET_VM_WORK to a shorter dir",
                    sock.display()
                )));
            }
            for d in ["unplug-req", "unplug-done"] {
                let p = rc_dir.join(d);
                fs::create_dir_all(&p).map_err(io_err(format!("create {}", p.display())))?;
            }
            args.push("-qmp".into());
            args.push(format!("unix:{},server=on,wait=off", qemu_escape(&sock)));
            Some(sock)
        } else {
            None
        };

        let mut machine = "pc".to_string();
        let mut mem = format!("{}M", self.mem_mib);
        if !self.pmems.is_empty() {
            let mut total = 0u64;
            let mut placed = 0u64;
            for (i, p) in self.pmems.iter().enumerate() {
                let path = match p {
                    PmemSpec::Existing(p) => abs(p)?,
                    PmemSpec::Fresh { name, size } => {
                        work.sparse_file(&format!("{name}.pmem"), *size)?
                    }
                };
                let size = fs::metadata(&path)
                    .map_err(io_err(format!("stat {}", path.display())))?
                    .len();
                if size <= NVDIMM_LABEL_SIZE || !size.is_multiple_of(2 << 20) {
                    return Err(HarnessError::Config(format!(
                        "NVDIMM backing file {} must be a non-zero multiple of 2 MiB (is {size} bytes)",
                        path.display()
                    )));
                }
                total += size;
                args.push("-object".into());
                args.push(format!(
                    "memory-backend-file,id=nvm{i},share=on,mem-path={},size={size}",
                    qemu_escape(&path)
                ));
                args.push("-device".into());
                // QEMU packs NVDIMMs back to back and the label area is not part of the
                // region, so every region after the first would start 128 KiB off a 16 MiB
                // boundary, where the kernel refuses fsdax namespaces ("misaligned to 16M").
                // Real platforms align regions; place the DIMMs like they do. The device
                // memory area starts at 4 GiB while all RAM fits below the PCI hole.
                let placement = if self.mem_mib <= 3072 {
                    format!(",addr={:#x}", (4u64 << 30) + placed)
                } else {
                    String::new()
                };
                placed += size.next_multiple_of(NVDIMM_ALIGN);
                args.push(format!(
                    "nvdimm,id=nv{i},memdev=nvm{i},label-size=128K{placement}"
                ));
            }
            machine.push_str(",nvdimm=on");
            let maxmem = self.mem_mib + total.div_ceil(1 << 20) + 1024;
            mem = format!(
                "{}M,slots={},maxmem={maxmem}M",
                self.mem_mib,
                self.pmems.len() + 1
            );
        }
        args.extend(["-machine".into(), machine, "-m".into(), mem]);

        let debug = debug_enabled();
        let mut append = vec![
            "console=ttyS0".to_string(),
            "mitigations=off".into(),
            "panic=-1".into(),
            "rdinit=/init".into(),
        ];
        if debug {
            append.extend(["loglevel=7".into(), "vglet_debug=1".into()]);
        } else {
            append.extend(["quiet".into(), "loglevel=3".into()]);
        }
        append.extend(self.kernel_args.iter().cloned());
        args.extend([
            "-kernel".into(),
            kernel.display().to_string(),
            "-initrd".into(),
            initrd.display().to_string(),
            "-append".into(),
            append.join(" "),
        ]);
        args.extend(self.qemu_args.iter().cloned());

        if debug {
            eprintln!(
                "[{}] {} {}",
                self.name,
                host.qemu.display(),
                args.iter()
                    .map(|a| shell_quote(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }

        let log_file = match &self.log_to {
            Some(p) => {
                Some(fs::File::create(p).map_err(io_err(format!("create {}", p.display())))?)
            }
            None => None,
        };
        let mut cmd = Command::new(&host.qemu);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; no allocation between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(io_err(format!("start {}", host.qemu.display())))?;
        let sink = Arc::new(Mutex::new(Sink {
            log: log_file,
            text: String::new(),
            ready: None,
        }));
        let prefix = if self.quiet {
            None
        } else {
            Some(self.name.clone())
        };
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        let readers = vec![
            pump(out, prefix.clone(), Arc::clone(&sink), start, false),
            pump(
                err,
                prefix.map(|p| format!("{p} qemu")),
                Arc::clone(&sink),
                start,
                true,
            ),
        ];
        Ok(VmHandle {
            name: self.name.clone(),
            child: Some(child),
            readers,
            sink,
            start,
            timeout: self.timeout,
            rc_dir,
            qmp_socket,
            disk_ids,
            _work: work,
            _lock: lock,
        })
    }

    fn validate(&self) -> Result<(), HarnessError> {
        let bad = |m: String| Err(HarnessError::Config(m));
        let n = &self.name;
        if n.is_empty()
            || n.len() > 63
            || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            || n.starts_with('-')
        {
            return bad(format!(
                "guest name {n:?}: use 1-63 letters, digits and '-'"
            ));
        }
        if self.cpus == 0 || self.mem_mib < 256 {
            return bad("need at least 1 vCPU and 256 MiB".into());
        }
        for l in &self.links {
            if l.local_port == 0 || l.peer_port == 0 || l.local_port == l.peer_port {
                return bad(format!(
                    "udp link {}->{}: two different non-zero ports",
                    l.local_port, l.peer_port
                ));
            }
        }
        for d in &self.disks {
            match d {
                DiskSpec::Fresh { name, size } => {
                    if name.is_empty()
                        || name.len() > 20
                        || !name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    {
                        return bad(format!(
                            "disk name {name:?}: use 1-20 letters, digits, '-', '_', '.' (virtio serial)"
                        ));
                    }
                    if *size == 0 {
                        return bad(format!("disk {name}: size 0"));
                    }
                }
                DiskSpec::Existing(p) | DiskSpec::Shared(p) => {
                    if !p.is_file() {
                        return bad(format!("disk image {} does not exist", p.display()));
                    }
                }
            }
            if let DiskSpec::Shared(p) = d
                && on_tmpfs(p)
            {
                return bad(format!(
                    "shared disk {} is on tmpfs, which cannot do O_DIRECT (cache=none): \
                     put it under the scratch dir (WorkDir) instead",
                    p.display()
                ));
            }
        }
        for p in &self.pmems {
            if let PmemSpec::Existing(p) = p
                && !p.is_file()
            {
                return bad(format!(
                    "NVDIMM backing file {} does not exist",
                    p.display()
                ));
            }
        }
        for s in &self.shares {
            if !s.is_dir() {
                return bad(format!("shared dir {} does not exist", s.display()));
            }
        }
        for (k, _) in &self.env {
            let mut cs = k.chars();
            let ok = cs
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && cs.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return bad(format!("environment variable name {k:?}"));
            }
        }
        for m in &self.modules {
            if m.is_empty()
                || !m
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
            {
                return bad(format!("module name {m:?}"));
            }
        }
        for a in &self.kernel_args {
            if a.is_empty() || a.contains(char::is_whitespace) {
                return bad(format!("kernel argument {a:?} (no spaces)"));
            }
        }
        Ok(())
    }

    /// Writes job.sh, env.sh and cmd into the rc share (read by guest/init.sh).
    fn write_job(&self, rc_dir: &Path, cwd: &Path, command: &str) -> Result<(), HarnessError> {
        let mut job = String::new();
        job.push_str(&format!("VGLET_NAME={}\n", shell_quote(&self.name)));
        job.push_str(&format!(
            "VGLET_CWD={}\n",
            shell_quote(&cwd.to_string_lossy())
        ));
        job.push_str(&format!("VGLET_UDEV={}\n", u8::from(self.udev)));
        job.push_str(&format!(
            "VGLET_MODULES={}\n",
            shell_quote(&self.modules.join(" "))
        ));
        job.push_str(&format!("VGLET_DEBUG={}\n", u8::from(debug_enabled())));
        let mut tags = Vec::new();
        let mut paths = Vec::new();
        for (i, dir) in self.shares.iter().enumerate() {
            tags.push(shell_quote(&format!("vglet_s{i}")));
            paths.push(shell_quote(&abs(dir)?.to_string_lossy()));
        }
        job.push_str(&format!("VGLET_SHARE_TAGS=({})\n", tags.join(" ")));
        job.push_str(&format!("VGLET_SHARE_PATHS=({})\n", paths.join(" ")));
        let env: String = self
            .env
            .iter()
            .map(|(k, v)| format!("export {k}={}\n", shell_quote(v)))
            .collect();
        for (file, text) in [("job.sh", job.as_str()), ("env.sh", &env), ("cmd", command)] {
            let p = rc_dir.join(file);
            fs::write(&p, text).map_err(io_err(format!("write {}", p.display())))?;
        }
        Ok(())
    }
}

/// A running guest from [`Vm::spawn`].
pub struct VmHandle {
    name: String,
    child: Option<Child>,
    readers: Vec<JoinHandle<()>>,
    sink: Arc<Mutex<Sink>>,
    start: Instant,
    timeout: Duration,
    rc_dir: PathBuf,
    /// QEMU's QMP socket, only with [`Vm::guest_unplug`].
    qmp_socket: Option<PathBuf>,
    /// (disk name, QEMU device id) of each virtio disk.
    disk_ids: Vec<(String, String)>,
    _work: WorkDir,
    _lock: VmLock,
}

impl fmt::Debug for VmHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmHandle")
            .field("name", &self.name)
            .field("rc_dir", &self.rc_dir)
            .finish_non_exhaustive()
    }
}

impl VmHandle {
    /// The guest's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hot-unplugs the virtio disk `name` (a `fresh_disk` name or an image's file stem) and
    /// waits until QEMU reports the device gone, which needs the guest kernel to eject it.
    /// Only with [`Vm::guest_unplug`] (which opens the QMP socket).
    pub fn unplug_disk(&self, name: &str) -> Result<(), HarnessError> {
        let sock = self.qmp_socket.as_deref().ok_or_else(|| {
            HarnessError::Config("unplug_disk needs Vm::guest_unplug(true)".into())
        })?;
        let id = self
            .disk_ids
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id.as_str())
            .ok_or_else(|| HarnessError::Config(format!("no disk named {name:?}")))?;
        qmp::device_del(sock, id, UNPLUG_TIMEOUT)
    }

    /// Answers the guest's unplug requests (see [`Vm::guest_unplug`]).
    fn serve_unplug_requests(&self) {
        if self.qmp_socket.is_none() {
            return;
        }
        let Ok(entries) = fs::read_dir(self.rc_dir.join("unplug-req")) else {
            return;
        };
        let done = self.rc_dir.join("unplug-done");
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let _ = fs::remove_file(e.path());
            // A request seen twice (over 9p the guest's touch can report a failure and still
            // create the file, so it asks again) is answered as before: the disk is gone, and
            // a second device_del would overwrite the "ok" with "not found".
            if fs::read_to_string(done.join(&name)).is_ok_and(|a| a == "ok\n") {
                continue;
            }
            let answer = match self.unplug_disk(&name) {
                Ok(()) => "ok\n".to_string(),
                Err(err) => format!("error: {err}\n"),
            };
            eprintln!("[{}] host: unplug {name}: {}", self.name, answer.trim());
            // Written under a temporary name and renamed: the guest polls for the file and
            // must not read it half-written.
            let tmp = done.join(format!(".{name}.tmp"));
            if fs::write(&tmp, answer).is_ok() {
                let _ = fs::rename(&tmp, done.join(&name));
            }
        }
    }

    /// Waits for the guest to power off (or kills it at its timeout) and returns the command's
    /// exit code. Serves the guest's unplug requests meanwhile ([`Vm::guest_unplug`]).
    pub fn wait(mut self) -> Result<VmOutcome, HarnessError> {
        let deadline = self.start + self.timeout;
        let mut child = self.child.take().expect("wait once");
        let status = loop {
            self.serve_unplug_requests();
            match child.try_wait() {
                Ok(Some(st)) => break Ok(st),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(());
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(HarnessError::Io {
                        context: "waiting for qemu".into(),
                        source: e,
                    });
                }
            }
        };
        let duration = self.start.elapsed();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let (console, boot) = {
            let mut s = self.sink.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(log) = s.log.as_mut() {
                let _ = log.flush();
            }
            (std::mem::take(&mut s.text), s.ready)
        };
        let tail = || tail_lines(&console, 25);
        let status: ExitStatus = match status {
            Ok(st) => st,
            Err(()) => {
                return Err(HarnessError::Timeout {
                    name: self.name.clone(),
                    after: self.timeout,
                    console_tail: tail(),
                });
            }
        };
        if let Ok(msg) = fs::read_to_string(self.rc_dir.join("setup-error")) {
            return Err(HarnessError::GuestSetup {
                name: self.name.clone(),
                message: msg.trim().to_string(),
                console_tail: tail(),
            });
        }
        let rc = fs::read_to_string(self.rc_dir.join("rc")).ok();
        match rc.as_deref().map(str::trim).map(str::parse::<i32>) {
            Some(Ok(exit_code)) => Ok(VmOutcome {
                exit_code,
                duration,
                boot,
                console,
            }),
            _ => Err(HarnessError::NoStatus {
                name: self.name.clone(),
                qemu_status: status.to_string(),
                console_tail: tail(),
            }),
        }
    }
}

impl Drop for VmHandle {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Sink {
    log: Option<fs::File>,
    text: String,
    ready: Option<Duration>,
}

/// Copies one QEMU output stream line by line to stderr (prefixed), the log file and the
/// captured console.
fn pump(
    stream: impl Read + Send + 'static,
    prefix: Option<String>,
    sink: Arc<Mutex<Sink>>,
    start: Instant,
    is_stderr: bool,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']).replace('\r', "");
            if let Some(p) = &prefix {
                eprintln!("[{p}] {line}");
            }
            let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
            if !is_stderr && s.ready.is_none() && line.contains(READY_MARKER) {
                s.ready = Some(start.elapsed());
            }
            if let Some(log) = s.log.as_mut() {
                let _ = writeln!(log, "{}{line}", if is_stderr { "qemu: " } else { "" });
            }
            s.text.push_str(&line);
            s.text.push('\n');
        }
    })
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn debug_enabled() -> bool {
    std::env::var_os("VGLET_VM_DEBUG").is_some_and(|v| !v.is_empty() && v != "0")
}

fn keep_enabled() -> bool {
    std::env::var_os("VGLET_VM_KEEP").is_some_and(|v| v == "1")
}

/// Absolute path (QEMU and the guest need them; the guest's cwd is not QEMU's).
fn abs(p: &Path) -> Result<PathBuf, HarnessError> {
    std::path::absolute(p).map_err(io_err(format!("resolve {}", p.display())))
}

/// Mount points the guest gets fresh (tmpfs) instead of the host's: see guest/initramfs-init.sh.
const GUEST_PRIVATE: [&str; 3] = ["/tmp", "/run", "/dev/shm"];

/// The host dirs to re-expose in the guest so that every path in `wanted` is visible there:
/// for a path under a guest-private mount, its first directory below that mount
/// (`/tmp/clone/target/debug/x` -> `/tmp/clone`). Paths elsewhere need nothing. A path the
/// initramfs cannot hand to an overlay mount (`,` `:` `\` or a newline in it) is refused with
/// what to do instead.
fn hidden_host_dirs(wanted: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for p in wanted {
        for private in GUEST_PRIVATE {
            let Ok(rest) = p.strip_prefix(private) else {
                continue;
            };
            let Some(first) = rest.components().next() else {
                break; // the private mount itself: the guest has its own, by design
            };
            let dir = Path::new(private).join(first);
            let text = dir.to_string_lossy();
            if text.contains([',', ':', '\\', '\n']) {
                return Err(format!(
                    "{} lies under {private}, which the guest mounts afresh, and its name holds \
                     ',', ':', '\\' or a newline, which the harness cannot expose there: move the \
                     checkout (or target dir) elsewhere, e.g. under $HOME",
                    dir.display()
                ));
            }
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
            break;
        }
    }
    Ok(dirs)
}

/// QEMU option values escape ',' by doubling it.
fn qemu_escape(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

fn serial_of(p: &Path) -> String {
    let stem = p.file_stem().unwrap_or_default().to_string_lossy();
    stem.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(20)
        .collect()
}

/// The guest command that runs one test of the *current test binary*:
/// `<current_exe> --exact <test> --include-ignored --nocapture --test-threads=1`, quoted for
/// `bash -c` (a checkout path may hold spaces). For guests started with [`Vm::spawn`].
pub fn test_command(test: &str) -> Result<String, HarnessError> {
    let exe = std::env::current_exe().map_err(io_err("locate the current test binary"))?;
    Ok(format!(
        "{} --exact {} --include-ignored --nocapture --test-threads=1",
        shell_quote(&exe.to_string_lossy()),
        shell_quote(test)
    ))
}

/// Single-quotes `s` for bash, for a path or word put into a guest command.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn on_tmpfs(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills the zeroed struct; c is a valid NUL-terminated path.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type == libc::TMPFS_MAGIC
    }
}

static RUN_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A per-run scratch directory `<base>/<label>-<pid>-<n>`, where base is `$VGLET_VM_WORK` or
/// `<workspace>/target/vm-work` (a real disk, not tmpfs: shared disks need O_DIRECT).
/// Removed on drop unless `VGLET_VM_KEEP=1`. Every guest run gets one (fresh disks, rc share);
/// tests create their own for shared images and sync dirs.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates a new, empty scratch dir.
    pub fn new(label: &str) -> Result<Self, HarnessError> {
        let base = match std::env::var_os("VGLET_VM_WORK").filter(|v| !v.is_empty()) {
            Some(b) => PathBuf::from(b),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/vm-work"),
        };
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = abs(&base)?.join(format!("{label}-{}-{n}", std::process::id()));
        let path = normalize(&path);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(io_err(format!("create {}", path.display())))?;
        Ok(WorkDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates (or recreates) a sparse file of `size` bytes in this dir.
    pub fn sparse_file(&self, name: &str, size: u64) -> Result<PathBuf, HarnessError> {
        let p = self.path.join(name);
        let _ = fs::remove_file(&p);
        let f = fs::File::create(&p).map_err(io_err(format!("create {}", p.display())))?;
        f.set_len(size)
            .map_err(io_err(format!("truncate {}", p.display())))?;
        Ok(p)
    }

    /// Creates a subdirectory (e.g. a sync dir to [`Vm::share_dir`]).
    pub fn subdir(&self, name: &str) -> Result<PathBuf, HarnessError> {
        let p = self.path.join(name);
        fs::create_dir_all(&p).map_err(io_err(format!("create {}", p.display())))?;
        Ok(p)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if keep_enabled() {
            eprintln!("vglet-vm: kept {} (VGLET_VM_KEEP=1)", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes `.` and `..` components lexically (the workspace path has `tests/harness/../..`).
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn dirs_hidden_by_the_guest_are_exposed_once() {
        let p = |s: &str| PathBuf::from(s);
        let got = super::hidden_host_dirs(&[
            p("/tmp/my clone/tests/harness/guest/init.sh"),
            p("/tmp/my clone/target/debug/deps/e2e-1"),
            p("/run/user/0/x"),
            p("/dev/shm/t/bin"),
            p("/tmp"),
            p("/root/vglet"),
            p("/tmpfoo/x"),
        ])
        .unwrap();
        assert_eq!(
            got,
            [p("/tmp/my clone"), p("/run/user"), p("/dev/shm/t")],
            "one dir per hidden tree, nothing for paths the guest sees anyway"
        );
        let err = super::hidden_host_dirs(&[p("/tmp/a,b/x")]).unwrap_err();
        assert!(err.contains("move the checkout"), "{err}");
        assert!(
            super::hidden_host_dirs(&[p("/home/a,b/x")])
                .unwrap()
                .is_empty()
        );
    }

    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b'c"), r"'a b'\''c'");
        assert_eq!(qemu_escape(Path::new("/a,b")), "/a,,b");
        assert_eq!(serial_of(Path::new("/x/my disk.img")), "mydisk");
    }

    #[test]
    fn bad_names_are_config_errors() {
        for vm in [
            Vm::new("bad name"),
            Vm::new("ok").fresh_disk("this-name-is-way-too-long", 1),
            Vm::new("ok").env("A B", "x"),
            Vm::new("ok").disk("/nonexistent/x.img"),
            Vm::new("ok").udp_link(4000, 4000),
            Vm::new("ok").udp_link(0, 4000),
        ] {
            assert!(
                matches!(vm.validate(), Err(HarnessError::Config(_))),
                "{vm:?}"
            );
        }
        assert!(Vm::new("ok").fresh_disk("d1", 1 << 30).validate().is_ok());
        assert!(Vm::new("ok").udp_link(4000, 4001).validate().is_ok());
        assert_eq!(link_mac(0x1f42), "52:54:00:00:1f:42");
    }

    #[test]
    fn workdir_is_under_target_and_removed() {
        let w = WorkDir::new("unit").unwrap();
        let p = w.path().to_path_buf();
        assert!(p.is_dir());
        if std::env::var_os("VGLET_VM_WORK").is_none() {
            assert!(
                p.to_string_lossy().contains("/target/vm-work/unit-"),
                "{p:?}"
            );
        }
        let f = w.sparse_file("x.img", 1 << 30).unwrap();
        assert_eq!(fs::metadata(&f).unwrap().len(), 1 << 30);
        drop(w);
        assert!(keep_enabled() || !p.exists());
    }
}
