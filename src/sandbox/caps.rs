//! Capabilities inside the sandbox: Docker's default set, applied to the
//! bounding, permitted, effective and inheritable sets (ambient cleared).

use std::io;

/// CAP_CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
/// NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
pub const DOCKER_DEFAULT: [u32; 14] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];

pub fn default_mask() -> u64 {
    DOCKER_DEFAULT.iter().fold(0u64, |m, c| m | (1u64 << c))
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Limits every capability set to `keep` (a bit mask of capability numbers).
pub fn restrict_to(keep: u64) -> io::Result<()> {
    // Up to the kernel's last capability, which answers EINVAL past it:
    // cheaper than reading /proc/sys/kernel/cap_last_cap.
    for cap in (0..64u32).filter(|cap| keep & (1u64 << cap) == 0) {
        // SAFETY: prctl without pointers.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(err);
        }
    }
    // SAFETY: prctl without pointers.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    let low = keep as u32;
    let high = (keep >> 32) as u32;
    let data = [
        CapData {
            effective: low,
            permitted: low,
            inheritable: low,
        },
        CapData {
            effective: high,
            permitted: high,
            inheritable: high,
        },
    ];
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: header and two data structs, as capset(2) v3 requires.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_mask_has_fourteen_caps_and_no_sys_admin() {
        let mask = super::default_mask();
        assert_eq!(mask.count_ones(), 14);
        assert_eq!(mask & (1 << 21), 0);
    }
}
