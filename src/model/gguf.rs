//! What a GGUF file says about its model, from its header alone: architecture, quantisation
//! (`general.file_type`) and the parameter count (the elements of every tensor), so a report
//! can state them for any model, real or synthetic, without loading it.
//!
//! Read by hand (the format is a short header, GGUF v2/v3, little-endian): the crates that read
//! GGUF turn on serde_json's `arbitrary_precision` for the whole build, which would change how
//! every journal number is parsed, or pull in a CLI's dependencies.

use std::io::{BufReader, Read};
use std::path::Path;

/// The header's facts about a model.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufInfo {
    pub architecture: Option<String>,
    pub name: Option<String>,
    /// llama.cpp's `general.file_type` by name (Q4_K_M, Q8_0, F16, ...).
    pub quant: Option<String>,
    /// Elements of all tensors: the parameter count llama-server reports as `n_params`.
    pub params: u64,
    pub tensors: u64,
    pub file_bytes: u64,
}

const MAGIC: &[u8; 4] = b"GGUF";

/// The bounds a header of a real model stays within; beyond them the file is damaged, and
/// reading on would allocate whatever a corrupt length says.
const MAX_STRING: u64 = 1 << 24;
const MAX_COUNT: u64 = 1 << 32;

struct Header<R: Read> {
    r: R,
}

impl<R: Read> Header<R> {
    fn bytes<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let mut b = [0; N];
        self.r.read_exact(&mut b)?;
        Ok(b)
    }
    fn u32(&mut self) -> std::io::Result<u32> {
        self.bytes::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> std::io::Result<u64> {
        self.bytes::<8>().map(u64::from_le_bytes)
    }
    fn count(&mut self, what: &str) -> std::io::Result<u64> {
        let n = self.u64()?;
        if n > MAX_COUNT {
            return Err(damaged(format!("{what} of {n}")));
        }
        Ok(n)
    }
    fn string(&mut self) -> std::io::Result<String> {
        let n = self.u64()?;
        if n > MAX_STRING {
            return Err(damaged(format!("a string of {n} bytes")));
        }
        let mut b = vec![0; n as usize];
        self.r.read_exact(&mut b)?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        let copied = std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())?;
        if copied < n {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
    /// A value of type `t`: kept when it is a string or an integer that may matter, skipped
    /// otherwise (arrays of the tokenizer's 49,152 strings among them).
    fn value(&mut self, t: u32) -> std::io::Result<Value> {
        Ok(match t {
            0 | 1 | 7 => Value::Int(u64::from(self.bytes::<1>()?[0])),
            2 | 3 => Value::Int(u64::from(u16::from_le_bytes(self.bytes::<2>()?))),
            4 | 5 => Value::Int(u64::from(self.u32()?)),
            6 => {
                self.skip(4)?;
                Value::Other
            }
            8 => Value::Text(self.string()?),
            9 => {
                let element = self.u32()?;
                let n = self.count("an array")?;
                match fixed_size(element) {
                    Some(size) => self.skip(n * size)?,
                    None => {
                        for _ in 0..n {
                            self.value(element)?;
                        }
                    }
                }
                Value::Other
            }
            10 | 11 => Value::Int(self.u64()?),
            12 => {
                self.skip(8)?;
                Value::Other
            }
            other => return Err(damaged(format!("a value of unknown type {other}"))),
        })
    }
}

enum Value {
    Int(u64),
    Text(String),
    Other,
}

/// Bytes of one element of a fixed-size type (none for strings and arrays).
fn fixed_size(t: u32) -> Option<u64> {
    match t {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

fn damaged(what: String) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("not a GGUF model, or a damaged one ({what})"),
    )
}

/// llama.cpp's `llama_ftype` names (llama.h).
fn file_type(n: u64) -> String {
    let name = match n {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        other => return format!("file type {other}"),
    };
    name.to_owned()
}

/// Reads the header of the GGUF at `path`.
pub fn read(path: &Path) -> std::io::Result<GgufInfo> {
    let file = std::fs::File::open(path)?;
    let file_bytes = file.metadata()?.len();
    let mut h = Header {
        r: BufReader::with_capacity(1 << 16, file),
    };
    if &h.bytes::<4>()? != MAGIC {
        return Err(damaged("no GGUF magic".into()));
    }
    let version = h.u32()?;
    if !(2..=3).contains(&version) {
        return Err(damaged(format!("GGUF version {version}; 2 and 3 are read")));
    }
    let tensors = h.count("tensors")?;
    let entries = h.count("metadata entries")?;
    let mut info = GgufInfo {
        architecture: None,
        name: None,
        quant: None,
        params: 0,
        tensors,
        file_bytes,
    };
    for _ in 0..entries {
        let key = h.string()?;
        let t = h.u32()?;
        match (key.as_str(), h.value(t)?) {
            ("general.architecture", Value::Text(s)) => info.architecture = Some(s),
            ("general.name", Value::Text(s)) => info.name = Some(s),
            ("general.file_type", Value::Int(n)) => info.quant = Some(file_type(n)),
            _ => {}
        }
    }
    for _ in 0..tensors {
        h.string()?;
        let dims = h.u32()?;
        if dims > 8 {
            return Err(damaged(format!("a tensor of {dims} dimensions")));
        }
        let mut elements: u64 = 1;
        for _ in 0..dims {
            elements = elements.saturating_mul(h.u64()?);
        }
        h.u32()?; // its type
        h.u64()?; // its offset
        info.params = info.params.saturating_add(elements);
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF header written by hand: two metadata entries of interest, an array of strings to
    /// skip, and two tensors.
    fn header() -> Vec<u8> {
        let mut b = Vec::new();
        let string = |b: &mut Vec<u8>, s: &str| {
            b.extend((s.len() as u64).to_le_bytes());
            b.extend(s.as_bytes());
        };
        b.extend(MAGIC);
        b.extend(3u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        b.extend(4u64.to_le_bytes());
        string(&mut b, "general.architecture");
        b.extend(8u32.to_le_bytes());
        string(&mut b, "llama");
        string(&mut b, "tokenizer.ggml.tokens");
        b.extend(9u32.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend(3u64.to_le_bytes());
        for t in ["a", "bb", "ccc"] {
            string(&mut b, t);
        }
        string(&mut b, "llama.rope.freq_base");
        b.extend(6u32.to_le_bytes());
        b.extend(10000f32.to_le_bytes());
        string(&mut b, "general.file_type");
        b.extend(4u32.to_le_bytes());
        b.extend(15u32.to_le_bytes());
        for (name, dims) in [
            ("token_embd.weight", vec![64u64, 1000]),
            ("output_norm.weight", vec![64]),
        ] {
            string(&mut b, name);
            b.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                b.extend(d.to_le_bytes());
            }
            b.extend(0u32.to_le_bytes());
            b.extend(0u64.to_le_bytes());
        }
        b
    }

    #[test]
    fn reads_architecture_quantisation_and_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, header()).unwrap();
        let info = read(&path).unwrap();
        assert_eq!(info.architecture.as_deref(), Some("llama"));
        assert_eq!(info.quant.as_deref(), Some("Q4_K_M"));
        assert_eq!(info.params, 64 * 1000 + 64);
        assert_eq!(info.tensors, 2);
        // Cut anywhere, or not GGUF at all: an error, never a panic or a huge allocation.
        let whole = header();
        for cut in 0..whole.len() {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert!(read(&path).is_err(), "cut at {cut}");
        }
        let mut huge = whole.clone();
        huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, huge).unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("damaged"));
    }
}
