//! The pause image: a hand-assembled static x86-64 Linux program and the `docker load` tarball
//! that wraps it, so a node never needs a registry to start sandboxes.
//!
//! The program installs handlers for SIGTERM and SIGINT that call `exit_group(0)`, then loops
//! on `pause()`. Handlers matter because the program runs as PID 1 of its PID namespace, where
//! the kernel drops signals that have no handler: without them `docker stop` would always wait
//! out the grace period and end in SIGKILL. Having no children in its own PID namespace (app
//! containers keep private PID namespaces), it does not need to reap zombies.

use sha2::{Digest, Sha256};

/// The image reference the Docker runtime uses for sandboxes.
pub const PAUSE_IMAGE: &str = "skiff/pause:3.9";

/// Where the program is mapped; the whole file is one read+execute segment.
const BASE: u64 = 0x40_0000;
/// ELF header (64 bytes) plus one program header (56 bytes).
const CODE_OFFSET: u64 = 64 + 56;

/// The pause program as a complete ELF64 executable (208 bytes, no libc).
pub fn pause_binary() -> Vec<u8> {
    // Offsets inside the code, fixed by the instruction encodings below.
    const HANDLER: u64 = 46;
    const ACT: u64 = 56;
    let handler_addr = BASE + CODE_OFFSET + HANDLER;
    let act_addr = u32::try_from(BASE + CODE_OFFSET + ACT).expect("below 4 GiB");

    let mut code: Vec<u8> = Vec::with_capacity(96);
    // rt_sigaction(SIGTERM, &act, NULL, 8)
    code.extend([0xB8, 13, 0, 0, 0]); //            mov eax, 13 (rt_sigaction)
    code.extend([0xBF, 15, 0, 0, 0]); //            mov edi, 15 (SIGTERM)
    code.push(0xBE); //                             mov esi, act
    code.extend(act_addr.to_le_bytes());
    code.extend([0x31, 0xD2]); //                   xor edx, edx
    code.extend([0x41, 0xBA, 8, 0, 0, 0]); //       mov r10d, 8 (sizeof sigset_t)
    code.extend([0x0F, 0x05]); //                   syscall
    // rt_sigaction(SIGINT, &act, NULL, 8); syscall keeps rsi, rdx and r10.
    code.extend([0xB8, 13, 0, 0, 0]); //            mov eax, 13
    code.extend([0xBF, 2, 0, 0, 0]); //             mov edi, 2 (SIGINT)
    code.extend([0x0F, 0x05]); //                   syscall
    // loop: pause(); goto loop
    debug_assert_eq!(code.len(), 37);
    code.extend([0xB8, 34, 0, 0, 0]); //            mov eax, 34 (pause)
    code.extend([0x0F, 0x05]); //                   syscall
    code.extend([0xEB, 0xF7]); //                   jmp loop (-9)
    // handler: exit_group(0)
    debug_assert_eq!(code.len() as u64, HANDLER);
    code.extend([0xB8, 231, 0, 0, 0]); //           mov eax, 231 (exit_group)
    code.extend([0x31, 0xFF]); //                   xor edi, edi
    code.extend([0x0F, 0x05]); //                   syscall
    code.push(0x90); //                             nop (align act to 8)
    // struct kernel_sigaction { handler, flags, restorer, mask }. Older x86-64 kernels refuse
    // to deliver a signal without SA_RESTORER; the handler never returns, so any address does.
    debug_assert_eq!(code.len() as u64, ACT);
    const SA_RESTORER: u64 = 0x0400_0000;
    code.extend(handler_addr.to_le_bytes());
    code.extend(SA_RESTORER.to_le_bytes());
    code.extend(handler_addr.to_le_bytes());
    code.extend(0u64.to_le_bytes());

    let size = CODE_OFFSET + code.len() as u64;
    let mut elf: Vec<u8> = Vec::with_capacity(size as usize);
    // ELF header.
    elf.extend([0x7F, b'E', b'L', b'F', 2, 1, 1, 0]); // 64-bit, little endian, SysV
    elf.extend([0u8; 8]);
    elf.extend(2u16.to_le_bytes()); // ET_EXEC
    elf.extend(0x3Eu16.to_le_bytes()); // EM_X86_64
    elf.extend(1u32.to_le_bytes()); // EV_CURRENT
    elf.extend((BASE + CODE_OFFSET).to_le_bytes()); // e_entry
    elf.extend(64u64.to_le_bytes()); // e_phoff
    elf.extend(0u64.to_le_bytes()); // e_shoff
    elf.extend(0u32.to_le_bytes()); // e_flags
    elf.extend(64u16.to_le_bytes()); // e_ehsize
    elf.extend(56u16.to_le_bytes()); // e_phentsize
    elf.extend(1u16.to_le_bytes()); // e_phnum
    elf.extend(64u16.to_le_bytes()); // e_shentsize
    elf.extend(0u16.to_le_bytes()); // e_shnum
    elf.extend(0u16.to_le_bytes()); // e_shstrndx
    // Program header: one PT_LOAD of the whole file, read + execute.
    elf.extend(1u32.to_le_bytes()); // PT_LOAD
    elf.extend(5u32.to_le_bytes()); // PF_R | PF_X
    elf.extend(0u64.to_le_bytes()); // p_offset
    elf.extend(BASE.to_le_bytes()); // p_vaddr
    elf.extend(BASE.to_le_bytes()); // p_paddr
    elf.extend(size.to_le_bytes()); // p_filesz
    elf.extend(size.to_le_bytes()); // p_memsz
    elf.extend(0x1000u64.to_le_bytes()); // p_align
    debug_assert_eq!(elf.len() as u64, CODE_OFFSET);
    elf.extend(code);
    elf
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn append(builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]) {
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, path, data)
        .expect("writing a tar into memory cannot fail");
}

/// A `docker load` tarball (manifest.json, image config, one layer holding `/pause`) that
/// tags the image as `reference`. Deterministic: the same bytes on every node.
pub fn pause_image_tar(reference: &str) -> Vec<u8> {
    let mut layer = tar::Builder::new(Vec::new());
    append(&mut layer, "pause", 0o755, &pause_binary());
    let layer = layer.into_inner().expect("in-memory tar");
    let layer_digest = sha256_hex(&layer);

    let epoch = "1970-01-01T00:00:00Z";
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": epoch,
        "config": { "Entrypoint": ["/pause"], "Labels": { "io.skiff.pause": "true" } },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
        "history": [{ "created": epoch, "created_by": "skiff-runtime: built-in pause program" }],
    });
    let config = serde_json::to_vec(&config).expect("json");
    let config_name = format!("{}.json", sha256_hex(&config));
    let layer_name = format!("{layer_digest}/layer.tar");
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [reference],
        "Layers": [layer_name],
    }]);
    let manifest = serde_json::to_vec(&manifest).expect("json");

    let mut image = tar::Builder::new(Vec::new());
    append(&mut image, &config_name, 0o644, &config);
    append(&mut image, &layer_name, 0o644, &layer);
    append(&mut image, "manifest.json", 0o644, &manifest);
    image.into_inner().expect("in-memory tar")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn run_and_signal(signal: &str) -> std::process::ExitStatus {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pause");
        std::fs::write(&path, pause_binary()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = Command::new(&path).stdin(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            child.try_wait().unwrap().is_none(),
            "pause exited on its own"
        );
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "pause ignored {signal}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn pause_blocks_and_exits_zero_on_sigterm() {
        assert_eq!(run_and_signal("-TERM").code(), Some(0));
    }

    #[test]
    fn pause_exits_zero_on_sigint() {
        assert_eq!(run_and_signal("-INT").code(), Some(0));
    }

    #[test]
    fn image_tar_is_deterministic_and_lists_manifest() {
        let a = pause_image_tar(PAUSE_IMAGE);
        assert_eq!(a, pause_image_tar(PAUSE_IMAGE));
        let mut archive = tar::Archive::new(&a[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.contains(&"manifest.json".to_string()));
        assert_eq!(names.len(), 3);
    }
}
