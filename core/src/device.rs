//! Where and in which precision a model runs: [`DeviceSpec`] (`cpu`, `cuda`, `cuda:N`, `auto`)
//! and [`Dtype`] (f32, bf16, f16). Log-softmax is always computed in f32 whatever the dtype.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A device as the user names it.
///
/// ```
/// use evalkit_core::DeviceSpec;
/// let d: DeviceSpec = "cuda:1".parse().unwrap();
/// assert_eq!(d, DeviceSpec::Cuda(1));
/// assert_eq!("cpu".parse::<DeviceSpec>().unwrap().resolve().unwrap(), tch::Device::Cpu);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The CPU.
    Cpu,
    /// CUDA device N.
    Cuda(usize),
    /// CUDA device 0 when CUDA is available, else the CPU.
    #[default]
    Auto,
}

impl DeviceSpec {
    /// Resolves to a `tch::Device`, failing when CUDA is asked for but unavailable.
    pub fn resolve(self) -> Result<tch::Device> {
        match self {
            DeviceSpec::Cpu => Ok(tch::Device::Cpu),
            DeviceSpec::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceSpec::Cuda(n) => {
                let count = tch::Cuda::device_count() as usize;
                if n < count {
                    Ok(tch::Device::Cuda(n))
                } else if count == 0 {
                    Err(Error::Unsupported(format!(
                        "device cuda:{n} requested but CUDA is not available (libtorch without CUDA, or no GPU)"
                    )))
                } else {
                    Err(Error::Unsupported(format!(
                        "device cuda:{n} requested but only {count} CUDA device(s) exist"
                    )))
                }
            }
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "auto" => Ok(DeviceSpec::Auto),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| Error::Unsupported(format!("unknown device `{s}` (cpu, cuda, cuda:N or auto)"))),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceSpec::Auto => f.write_str("auto"),
        }
    }
}

/// The precision weights and activations are kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dtype {
    /// 32-bit float.
    #[default]
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half.
    F16,
}

impl Dtype {
    /// The libtorch kind.
    pub fn kind(self) -> tch::Kind {
        match self {
            Dtype::F32 => tch::Kind::Float,
            Dtype::Bf16 => tch::Kind::BFloat16,
            Dtype::F16 => tch::Kind::Half,
        }
    }

    /// The name PyTorch and `config.json`'s `torch_dtype` give it.
    ///
    /// ```
    /// use evalkit_core::device::Dtype;
    /// assert_eq!(Dtype::Bf16.torch_name(), "bfloat16");
    /// assert_eq!(Dtype::Bf16.torch_name().parse::<Dtype>().unwrap(), Dtype::Bf16);
    /// ```
    pub fn torch_name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::Bf16 => "bfloat16",
            Dtype::F16 => "float16",
        }
    }
}

impl FromStr for Dtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" | "float" => Ok(Dtype::F32),
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            "f16" | "float16" | "half" => Ok(Dtype::F16),
            _ => Err(Error::Unsupported(format!("unknown dtype `{s}` (f32, bf16 or f16)"))),
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
        })
    }
}
