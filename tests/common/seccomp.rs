//! A seccomp filter for one syscall, as the tests install it to simulate a
//! kernel without the feature, forbid arming, or trap a syscall sud reissues.

/// One seccomp BPF instruction.
fn bpf(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const JEQ_K: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const RET_K: u32 = libc::BPF_RET | libc::BPF_K;
const NR: u32 = 0;
const fn arg_lo(i: u32) -> u32 {
    16 + 8 * i
}

/// Installs a seccomp filter on the calling thread (and the threads it
/// creates later): `action` for syscall `nr` whose first arguments equal
/// `args`, ALLOW for everything else.
pub fn seccomp(nr: u32, args: &[u32], action: u32) {
    let mut prog = vec![bpf(LD_W_ABS, 0, 0, NR)];
    // Each test that fails jumps to the final ALLOW.
    let tests = 1 + args.len();
    let mut remaining = tests;
    prog.push(bpf(JEQ_K, 0, (2 * remaining - 1) as u8, nr));
    for (i, &arg) in args.iter().enumerate() {
        remaining -= 1;
        prog.push(bpf(LD_W_ABS, 0, 0, arg_lo(i as u32)));
        prog.push(bpf(JEQ_K, 0, (2 * remaining - 1) as u8, arg));
    }
    prog.push(bpf(RET_K, 0, 0, action));
    prog.push(bpf(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW));
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: a valid filter program; no_new_privs first, as unprivileged
    // filters require.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let r = libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog);
        assert_eq!(r, 0, "seccomp: {}", std::io::Error::last_os_error());
    }
}
