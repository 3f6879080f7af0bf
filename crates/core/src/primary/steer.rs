//! The classic BPF program that steers a reuseport group (`group.rs`): for
//! each new connection the kernel runs it and puts the connection in the
//! accept queue of the socket whose index it returns. It draws a random
//! number and maps it onto the sockets of the workers that may take work,
//! so each gets an equal share and the others none. A return past the
//! group's end makes the kernel fall back to its own hash, which only
//! happens when no worker may take work (the primary then rescues).

/// `struct sock_filter`, as the kernel reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Opcodes (linux/filter.h, linux/bpf_common.h).
const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
const ALU_MOD_K: u16 = 0x04 | 0x90; // BPF_ALU | BPF_MOD | BPF_K
const JMP_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K
/// `SKF_AD_OFF + SKF_AD_RANDOM`: a fresh random u32 in A.
const AD_RANDOM: u32 = (-0x1000i32 + 56) as u32;

/// Past any group's end: the kernel's own choice.
pub const KERNEL_CHOICE: u32 = u32::MAX;

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

/// The program for `open`: the group indices of the sockets that may get
/// new connections, each an equal share.
pub fn program(open: &[u32]) -> Vec<Insn> {
    match open {
        [] => vec![insn(RET_K, 0, 0, KERNEL_CHOICE)],
        [only] => vec![insn(RET_K, 0, 0, *only)],
        _ => {
            let mut p = vec![
                insn(LD_W_ABS, 0, 0, AD_RANDOM),
                insn(ALU_MOD_K, 0, 0, open.len() as u32),
            ];
            // A is now below open.len(): `jeq #i` returns open[i], else on.
            for (i, &index) in open.iter().enumerate().take(open.len() - 1) {
                p.push(insn(JMP_JEQ_K, 0, 1, i as u32));
                p.push(insn(RET_K, 0, 0, index));
            }
            p.push(insn(RET_K, 0, 0, open[open.len() - 1]));
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a program of the instructions `program` emits, with `random`
    /// as the kernel's random number.
    fn run(p: &[Insn], random: u32) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                LD_W_ABS if i.k == AD_RANDOM => a = random,
                ALU_MOD_K => a %= i.k,
                JMP_JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn each_open_socket_gets_an_equal_share_and_the_others_none() {
        let open = [0, 2, 3, 7];
        let p = program(&open);
        let mut got = [0u32; 8];
        for r in 0..40_000u32 {
            got[run(&p, r.wrapping_mul(2_654_435_761)) as usize] += 1;
        }
        for (i, &n) in got.iter().enumerate() {
            if open.contains(&(i as u32)) {
                assert_eq!(n, 10_000, "socket {i}");
            } else {
                assert_eq!(n, 0, "socket {i}");
            }
        }
    }

    #[test]
    fn one_socket_or_none() {
        assert_eq!(run(&program(&[5]), 123), 5);
        assert_eq!(run(&program(&[]), 123), KERNEL_CHOICE);
    }

    #[test]
    fn the_program_stays_within_the_kernels_limits() {
        // BPF_MAXINSNS is 4096; jumps are relative and short.
        assert!(program(&(0..1024).collect::<Vec<_>>()).len() <= 4096);
    }
}
