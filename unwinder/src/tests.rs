use super::*;

const LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.so.6";

/// One row of `readelf --debug-dump=frames-interp`: PC, CFA column, rbp column.
struct ReadelfRow {
    pc: u64,
    cfa: String,
    rbp: Option<String>,
    ra_undefined: bool,
}

/// Every FDE of a binary's `.eh_frame` as readelf interprets it: (start, end, rows); an
/// FDE that changes nothing gets its CIE's initial row.
fn readelf_fdes(path: &str) -> Vec<(u64, u64, Vec<ReadelfRow>)> {
    let out = std::process::Command::new("readelf")
        .args(["--debug-dump=frames-interp", path])
        .output()
        .expect("readelf (binutils) is installed by scripts/bootstrap.sh --test");
    // readelf exits 1 on libc although it prints every FDE; the FDE count is checked below.
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fdes = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    let mut in_eh_frame = false;
    let mut in_fde = false;
    let mut cies: std::collections::HashMap<String, ReadelfRow> = std::collections::HashMap::new();
    let mut cie_of_fde: Vec<String> = Vec::new();
    let mut current_cie: Option<String> = None;
    for line in text.lines() {
        if line.contains(" CIE ") || line.contains(" ZERO terminator") {
            in_fde = false;
            current_cie = line.contains(" CIE ").then(|| line[..8].to_owned());
            continue;
        }
        if line.starts_with("Contents of the ") {
            in_eh_frame = line.contains(".eh_frame section");
            continue;
        }
        if !in_eh_frame {
            continue;
        }
        if let Some(range) = line
            .split(" FDE ")
            .nth(1)
            .and_then(|r| r.split("pc=").nth(1))
        {
            let (s, e) = range.trim().split_once("..").expect("pc=a..b");
            let s = u64::from_str_radix(s, 16).unwrap();
            let e = u64::from_str_radix(e, 16).unwrap();
            fdes.push((s, e, Vec::new()));
            let cie = line
                .split("cie=")
                .nth(1)
                .unwrap_or("")
                .get(..8)
                .unwrap_or("");
            cie_of_fde.push(cie.to_owned());
            in_fde = true;
            current_cie = None;
            continue;
        }
        if line.trim_start().starts_with("LOC") {
            columns = line.split_whitespace().map(str::to_owned).collect();
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if (in_fde || current_cie.is_some()) && fields.len() == columns.len() && fields.len() >= 2 {
            let Ok(pc) = u64::from_str_radix(fields[0], 16) else {
                continue;
            };
            let rbp = columns
                .iter()
                .position(|c| c == "rbp")
                .map(|i| fields[i].to_owned());
            let ra_undefined = columns
                .iter()
                .position(|c| c == "ra")
                .is_some_and(|i| fields[i] == "u");
            let row = ReadelfRow {
                pc,
                cfa: fields[1].to_owned(),
                rbp,
                ra_undefined,
            };
            if let Some(cie) = current_cie.take() {
                cies.insert(cie, row);
            } else if let Some(fde) = fdes.last_mut() {
                fde.2.push(row);
            }
        }
    }
    for ((start, _, rows), cie) in fdes.iter_mut().zip(&cie_of_fde) {
        if rows.is_empty()
            && let Some(c) = cies.get(cie)
        {
            rows.push(ReadelfRow {
                pc: *start,
                cfa: c.cfa.clone(),
                rbp: c.rbp.clone(),
                ra_undefined: c.ra_undefined,
            });
        }
    }
    fdes
}

fn check_against_readelf(path: &str) -> usize {
    let data = std::fs::read(path).unwrap();
    let table = UnwindTable::from_elf(&data).unwrap();
    let fdes = readelf_fdes(path);
    assert!(!fdes.is_empty(), "{path}: readelf found no FDE");
    let mut checked = 0;
    for (start, end, rows) in &fdes {
        if *start == 0 {
            continue; // an FDE of code the linker discarded
        }
        for r in rows {
            let ours = table
                .lookup(r.pc)
                .unwrap_or_else(|| panic!("{path}: no row at {:#x}", r.pc));
            let what = format!("{path} FDE {start:#x}..{end:#x} at {:#x}: {ours:?}", r.pc);
            if r.ra_undefined {
                assert_eq!(ours.cfa_kind(), cfa::END, "{what}");
            } else if let Some(off) = r.cfa.strip_prefix("rsp+") {
                assert_eq!(ours.cfa_kind(), cfa::RSP, "{what}");
                assert_eq!(
                    i64::from(ours.cfa_offset) * 8,
                    off.parse::<i64>().unwrap(),
                    "{what}"
                );
            } else if let Some(off) = r.cfa.strip_prefix("rbp+") {
                assert_eq!(ours.cfa_kind(), cfa::RBP, "{what}");
                assert_eq!(
                    i64::from(ours.cfa_offset) * 8,
                    off.parse::<i64>().unwrap(),
                    "{what}"
                );
            } else if r.cfa == "exp" {
                assert!(
                    matches!(ours.cfa_kind(), cfa::PLT | cfa::UNSUPPORTED),
                    "{what}"
                );
            }
            match r.rbp.as_deref() {
                Some(c) if c.starts_with("c-") || c.starts_with("c+") => {
                    let off: i64 = c[1..].parse().unwrap();
                    if ours.cfa_kind() != cfa::PLT && ours.cfa_kind() != cfa::UNSUPPORTED {
                        assert_eq!(ours.rbp_kind(), rbp::AT_CFA, "{what}");
                        assert_eq!(i64::from(ours.rbp_offset) * 8, off, "{what}");
                    }
                }
                Some("u") | None => {
                    if matches!(ours.cfa_kind(), cfa::RSP | cfa::RBP) {
                        assert_eq!(ours.rbp_kind(), rbp::SAME, "{what}");
                    }
                }
                _ => {}
            }
            checked += 1;
        }
        // Past the end of a function no other FDE starts at: a gap row.
        if !fdes.iter().any(|(s, e, _)| *s <= *end && *end < *e) {
            let gap = table.lookup(*end).unwrap();
            assert_eq!(
                gap.cfa_kind(),
                cfa::NONE,
                "{path}: after {start:#x}..{end:#x}"
            );
        }
    }
    checked
}

#[test]
fn libc_rows_match_readelf() {
    let checked = check_against_readelf(LIBC);
    assert!(checked > 10_000, "only {checked} rows checked");
    let table = UnwindTable::from_elf(&std::fs::read(LIBC).unwrap()).unwrap();
    assert!(table.stats.fdes > 3_000, "{:?}", table.stats);
    assert!(
        table.stats.plt_rows > 0,
        "libc's .plt uses the PLT expression"
    );
    // A handful of hand-written assembly rules at most.
    assert!(
        table.stats.unsupported_rows * 100 < table.stats.raw_rows,
        "{:?}",
        table.stats
    );
    // Sorted, unique PCs, merged neighbours.
    for w in table.rows.windows(2) {
        assert!(w[0].pc < w[1].pc);
        assert!(
            w[0].kinds != w[1].kinds
                || w[0].cfa_offset != w[1].cfa_offset
                || w[0].rbp_offset != w[1].rbp_offset
        );
    }
}

#[test]
fn own_test_binary_rows_match_readelf() {
    // This test binary: Rust code built without forced frame pointers.
    let exe = std::env::current_exe().unwrap();
    let checked = check_against_readelf(exe.to_str().unwrap());
    assert!(checked > 1_000);
}

#[test]
fn start_marks_the_end_of_the_stack() {
    // `_start` says its return address is undefined: the walk is complete there.
    let exe = std::env::current_exe().unwrap();
    let data = std::fs::read(&exe).unwrap();
    let start = crate::elf::parse(&data[..]).unwrap().entry;
    let table = UnwindTable::from_elf(&data).unwrap();
    let row = table.lookup(start + 4).unwrap();
    assert_eq!(row.cfa_kind(), cfa::END, "{row:?}");
}

#[test]
fn plt_expression_is_recognised() {
    let gcc = [
        0x77, 0x08, 0x80, 0x00, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22,
    ];
    assert_eq!(plt_expression(&gcc), Some((8, 11)));
    let ld = [
        0x77, 0x08, 0x80, 0x00, 0x3f, 0x1a, 0x3a, 0x2a, 0x33, 0x24, 0x22,
    ];
    assert_eq!(plt_expression(&ld), Some((8, 10)));
    assert_eq!(plt_expression(&gcc[..8]), None);
    assert_eq!(plt_expression(&[0x77, 0x08, 0x06]), None);
    assert_eq!(plt_expression(&[]), None);
}

#[test]
fn bad_elf_is_an_error_not_a_panic() {
    let libc = std::fs::read(LIBC).unwrap();
    for cut in [0, 3, 64, 1000, 4096, libc.len() / 2] {
        // Cut files must fail cleanly (or, past the headers, still parse what is there).
        let _ = UnwindTable::from_elf(&libc[..cut]);
        let _ = ElfInfo::parse(&libc[..cut]);
    }
    assert!(matches!(
        UnwindTable::from_elf(&libc[..64]),
        Err(UnwindError::Elf(_))
    ));
    assert!(matches!(
        UnwindTable::from_elf(b"#!/bin/sh\n"),
        Err(UnwindError::Elf(_))
    ));
    // Garbage inside .eh_frame: overwrite the section.
    let file = crate::elf::parse(&libc[..]).unwrap();
    let eh = file.section(".eh_frame").unwrap();
    let (off, size) = (eh.offset, eh.size);
    let mut bad = libc.clone();
    for (i, b) in bad[off as usize..(off + size) as usize]
        .iter_mut()
        .enumerate()
    {
        *b = (i * 7 + 3) as u8;
    }
    let _ = UnwindTable::from_elf(&bad);
}

#[test]
fn elf_without_cfi_is_reported() {
    let dir = std::env::temp_dir().join(format!("unwinder-nocfi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("libc-nocfi.so");
    let status = std::process::Command::new("objcopy")
        .args([
            "--remove-section=.eh_frame",
            "--remove-section=.eh_frame_hdr",
            "--remove-section=.debug_frame",
            LIBC,
        ])
        .arg(&out)
        .status()
        .expect("objcopy (binutils)");
    assert!(status.success());
    let data = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = UnwindTable::from_elf(&data).unwrap_err();
    assert!(matches!(err, UnwindError::NoCfi), "{err}");
    assert_eq!(err.to_string(), "no .eh_frame or .debug_frame section");
    // The ELF itself is fine: the agent still gets the bias and falls back to frame pointers.
    assert!(ElfInfo::parse(&data).unwrap().build_id.is_some());
}

#[test]
fn bias_of_a_pie_mapping() {
    let info = ElfInfo::parse(&std::fs::read(LIBC).unwrap()).unwrap();
    let text = info
        .segments
        .iter()
        .find(|s| s.offset != 0 && s.vaddr == s.offset)
        .copied()
        .unwrap();
    // libc's text mapped at 0x7f00_0000_0000 + its page-aligned offset.
    let base = 0x7f00_0000_0000u64;
    let page = text.offset & !0xfff;
    assert_eq!(info.bias(base + page, page), Some(base));
    assert_eq!(info.bias(base, u64::MAX / 2), None);
}

#[test]
fn bias_picks_the_segment_the_mapping_starts() {
    // rustc's layout: read-only headers at offset 0 end inside the page where .text starts,
    // and .text's vaddr is one page above its offset.
    let info = ElfInfo {
        build_id: None,
        segments: vec![
            Segment {
                offset: 0,
                vaddr: 0,
                filesz: 0x180e0,
            },
            Segment {
                offset: 0x180e0,
                vaddr: 0x190e0,
                filesz: 0x442b0,
            },
        ],
    };
    let start = 0x5555_5556_d000u64;
    let bias = info.bias(start, 0x18000).unwrap();
    // File offset 0x180e0 (vaddr 0x190e0) is mapped at start + 0xe0.
    assert_eq!(0x190e0 + bias, start + 0xe0);
}

/// A compressed section as `objcopy --compress-debug-sections` writes it: `Elf64_Chdr`
/// (type, reserved, claimed size, alignment) and the stream; and its section header.
fn compressed(kind: u32, claimed: u64, stream: &[u8]) -> (elf::Section, Vec<u8>) {
    let mut data = Vec::new();
    data.extend_from_slice(&kind.to_le_bytes());
    data.extend_from_slice(&0_u32.to_le_bytes());
    data.extend_from_slice(&claimed.to_le_bytes());
    data.extend_from_slice(&8_u64.to_le_bytes());
    data.extend_from_slice(stream);
    let section = elf::Section {
        name: ".debug_frame".into(),
        kind: 1,
        flags: elf::SHF_COMPRESSED,
        addr: 0,
        offset: 0,
        size: data.len() as u64,
    };
    (section, data)
}

#[test]
fn compressed_sections_decompress_and_bad_ones_are_errors() {
    use std::io::Write as _;
    let payload: Vec<u8> = (0..5000_u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    let zstd = zstd::encode_all(&payload[..], 3).unwrap();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&payload).unwrap();
    let zlib = z.finish().unwrap();
    for (kind, stream) in [
        (elf::ELFCOMPRESS_ZSTD, &zstd),
        (elf::ELFCOMPRESS_ZLIB, &zlib),
    ] {
        let (s, data) = compressed(kind, payload.len() as u64, stream);
        assert_eq!(&*s.contents(&data).unwrap(), &payload[..], "type {kind}");
        // A header that lies about the size, either way.
        for claimed in [payload.len() as u64 - 1, payload.len() as u64 + 1] {
            let (s, data) = compressed(kind, claimed, stream);
            let e = s.contents(&data).unwrap_err().to_string();
            assert!(
                e.contains("not the") && e.contains("its header says"),
                "{e}"
            );
        }
        // Corrupt data.
        let mut bad = stream.clone();
        bad.truncate(bad.len() / 2);
        let (s, data) = compressed(kind, payload.len() as u64, &bad);
        assert!(s.contents(&data).is_err(), "type {kind}");
    }
    // A claimed size beyond the cap is refused before anything is allocated.
    let (s, data) = compressed(elf::ELFCOMPRESS_ZSTD, u64::MAX, &zstd);
    let e = s.contents(&data).unwrap_err().to_string();
    assert!(e.contains("more than the"), "{e}");
    let (s, data) = compressed(7, 10, &zstd);
    assert!(
        s.contents(&data)
            .unwrap_err()
            .to_string()
            .contains("unknown compression type 7")
    );
    let (mut s, data) = compressed(elf::ELFCOMPRESS_ZLIB, 10, &[]);
    s.size = 12;
    assert!(
        s.contents(&data)
            .unwrap_err()
            .to_string()
            .contains("shorter than")
    );
}

/// A binary whose only call-frame information for its own code is `.debug_frame` (built
/// without unwind tables) unwinds the same when that section is zlib-compressed, as
/// distribution debug files and `gcc -gz` builds have it.
#[test]
fn a_compressed_debug_frame_gives_the_same_table() {
    let dir = std::env::temp_dir().join(format!("unwinder-gz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("df.c");
    std::fs::write(
        &src,
        "int f(int x) { return x * 2; }\nint g(int x) { return f(x) + 1; }\n\
         int main(int c, char **v) { (void)v; return g(c); }\n",
    )
    .unwrap();
    let plain = dir.join("df");
    let packed = dir.join("df.gz");
    let status = std::process::Command::new("gcc")
        .args([
            "-O1",
            "-g",
            "-fno-asynchronous-unwind-tables",
            "-fno-unwind-tables",
            "-o",
        ])
        .arg(&plain)
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(status.success());
    let status = std::process::Command::new("objcopy")
        .arg("--compress-debug-sections=zlib")
        .arg(&plain)
        .arg(&packed)
        .status()
        .expect("objcopy (binutils)");
    assert!(status.success());
    let (plain, packed) = (
        std::fs::read(&plain).unwrap(),
        std::fs::read(&packed).unwrap(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let section = elf::parse(&packed[..])
        .unwrap()
        .section_header(".debug_frame")
        .cloned()
        .expect("a .debug_frame");
    assert!(section.is_compressed(), "objcopy did not compress it");
    let want = UnwindTable::from_elf(&plain).unwrap();
    let got = UnwindTable::from_elf(&packed).unwrap();
    assert!(want.stats.debug_frame_fdes >= 3, "{:?}", want.stats);
    assert_eq!(got, want);
}

/// A zlib-compressed file written back decompressed: the same bytes in every section, a
/// file `readelf` reads the DWARF of as it reads the original's, and a program that still
/// runs (the loaded sections keep their offsets).
#[test]
fn a_compressed_file_is_written_back_decompressed() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("p.c");
    std::fs::write(
        &src,
        "static int f(int x) { return x * 2; }\nint main(int c, char **v) { (void)v; return f(c) + 1; }\n",
    )
    .unwrap();
    let (plain, packed, out) = (
        dir.path().join("p"),
        dir.path().join("p.gz"),
        dir.path().join("p.out"),
    );
    let ok = |c: &mut std::process::Command| assert!(c.status().expect("gcc/objcopy").success());
    ok(std::process::Command::new("gcc")
        .args(["-O1", "-g", "-o"])
        .arg(&plain)
        .arg(&src));
    ok(std::process::Command::new("objcopy")
        .arg("--compress-debug-sections=zlib")
        .arg(&plain)
        .arg(&packed));
    let packed_bytes = std::fs::read(&packed).unwrap();
    let packed_elf = elf::parse(&packed_bytes[..]).unwrap();
    assert!(
        elf::has_compressed_debug(&packed_elf),
        "objcopy did not compress"
    );
    let mut written = Vec::new();
    assert!(elf::write_decompressed(&packed_bytes, &mut written, 4096).is_err());
    assert!(written.is_empty(), "nothing written past the bound");
    let len = elf::write_decompressed(&packed_bytes, &mut written, u64::MAX).unwrap();
    assert_eq!(len, written.len() as u64);
    let got = elf::parse(&written[..]).unwrap();
    assert!(!got.sections.iter().any(elf::Section::is_compressed));
    let plain_bytes = std::fs::read(&plain).unwrap();
    let want = elf::parse(&plain_bytes[..]).unwrap();
    for s in want
        .sections
        .iter()
        .filter(|s| s.name.starts_with(".debug_"))
    {
        let g = got.section_header(&s.name).expect("every debug section");
        assert_eq!(
            g.contents(&written).unwrap(),
            s.contents(&plain_bytes).unwrap(),
            "{}",
            s.name
        );
    }
    std::fs::write(&out, &written).unwrap();
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let status = std::process::Command::new(&out).arg("x").status().unwrap();
    assert_eq!(status.code(), Some(5), "f(2) + 1");
    let dump = |p: &std::path::Path| {
        let o = std::process::Command::new("readelf")
            .arg("--debug-dump=info,line")
            .arg(p)
            .output()
            .expect("readelf");
        assert!(o.status.success() && o.stderr.is_empty(), "{o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(dump(&out), dump(&plain));
    // Nothing to decompress, or a cut file: an error, never a panic.
    assert!(elf::write_decompressed(&plain_bytes, &mut Vec::new(), u64::MAX).is_err());
    for cut in [64, 1000, packed_bytes.len() / 2, packed_bytes.len() - 1] {
        let _ = elf::write_decompressed(&packed_bytes[..cut], &mut Vec::new(), u64::MAX);
    }
}

/// A synthetic FDE's rows: real rows at `pcs`, then its gap row at `end`.
fn fde_rows(rows: &mut Rows, pcs: &[u32], end: u32) {
    rows.fde_starts.push(rows.rows.len());
    let real = UnwindRow {
        pc: 0,
        cfa_offset: 2,
        rbp_offset: 0,
        kinds: UnwindRow::pack_kinds(cfa::RSP, rbp::SAME),
    };
    for &pc in pcs {
        rows.rows.push(UnwindRow { pc, ..real });
    }
    rows.rows.push(UnwindRow {
        pc: end,
        cfa_offset: 0,
        rbp_offset: 0,
        kinds: UnwindRow::pack_kinds(cfa::NONE, rbp::SAME),
    });
}

#[test]
fn fdes_out_of_order_sort_like_their_rows() {
    let sorted = |rows: &Rows| {
        let mut all = rows.rows.clone();
        all.sort_by_key(order_key);
        all
    };
    // FDEs the linker placed apart (a cold part first, one in a hole), one starting where
    // the one before ends (its gap row sorts first), and one row-less FDE.
    let mut rows = Rows::default();
    fde_rows(&mut rows, &[100, 110, 120], 200);
    fde_rows(&mut rows, &[400, 450], 500);
    fde_rows(&mut rows, &[10, 20], 50);
    fde_rows(&mut rows, &[200, 300], 400);
    rows.fde_starts.push(rows.rows.len());
    let want = sorted(&rows);
    assert_eq!(rows.in_pc_order(), want);
    // Overlapping FDEs cannot be ordered whole: the rows are sorted one by one.
    let mut rows = Rows::default();
    fde_rows(&mut rows, &[100, 300], 400);
    fde_rows(&mut rows, &[200, 250], 260);
    let want = sorted(&rows);
    assert_eq!(rows.in_pc_order(), want);
}
