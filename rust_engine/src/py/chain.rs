//! `Chain(kernels)`: several kernels as one native call per block, GIL released.

use std::sync::{Mutex, MutexGuard};

use pyo3::prelude::*;

use super::args;
use super::array::{read_audio, to_list};
use super::error::IntoPyResult;
use super::kernel::Kernel;
use crate::dsp::{catch_panic, chain, check_block, check_rate, EngineError, NamedStage};

/// The name chain-level errors (bad construction, glue failures) carry.
const CHAIN: &str = "chain";

/// Runs its kernels in order, one native call per block; pass-through kernels are skipped.
#[pyclass(frozen, module = "stream._engine")]
pub struct Chain {
    kernels: Vec<Py<Kernel>>,
    /// The kernels that do something (not pass-through), in order.
    active: Vec<Py<Kernel>>,
    /// The blocks between stages, kept from call to call (a call holds every active kernel, so
    /// it finds them free unless the chain is used from two threads at once).
    buffers: Mutex<chain::Buffers>,
}

impl Chain {
    /// The stage that reads the chain's input: the first active kernel (else the first).
    fn first(&self) -> &str {
        self.active.first().unwrap_or(&self.kernels[0]).get().name()
    }

    /// Takes every active kernel for this call (without waiting) and runs `f` on their stages
    /// with the GIL released.
    pub(crate) fn run<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut [&mut NamedStage], &mut chain::Buffers) -> Result<T, EngineError> + Send,
    ) -> PyResult<T> {
        let mut guards = self
            .active
            .iter()
            .map(|k| k.get().take())
            .collect::<Result<Vec<_>, _>>()
            .py_err(py)?;
        let mut stages: Vec<&mut NamedStage> = guards.iter_mut().map(|g| &mut **g).collect();
        py.detach(|| Self::run_stages(&mut stages, &self.buffers, f))
            .py_err(py)
    }

    /// `run` on a thread that holds no GIL: waits for a kernel a settings call has (a live
    /// `set` from the session's loop), where `run` would say it is busy.
    pub(crate) fn run_waiting<T>(
        &self,
        f: impl FnOnce(&mut [&mut NamedStage], &mut chain::Buffers) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut guards: Vec<MutexGuard<'_, NamedStage>> =
            self.active.iter().map(|k| k.get().take_waiting()).collect();
        let mut stages: Vec<&mut NamedStage> = guards.iter_mut().map(|g| &mut **g).collect();
        Self::run_stages(&mut stages, &self.buffers, f)
    }

    fn run_stages<T>(
        stages: &mut [&mut NamedStage],
        buffers: &Mutex<chain::Buffers>,
        f: impl FnOnce(&mut [&mut NamedStage], &mut chain::Buffers) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        // Dropped before the kernels' guards, so the next call to take them finds these free.
        let mut kept = buffers.try_lock().ok();
        let mut fresh = chain::Buffers::new();
        let buffers = kept.as_deref_mut().unwrap_or(&mut fresh);
        catch_panic(|| f(stages, buffers)).map_err(|e| e.at(CHAIN))
    }
}

#[pymethods]
impl Chain {
    #[new]
    fn new(py: Python<'_>, kernels: &Bound<'_, PyAny>) -> PyResult<Self> {
        let config = |msg: String| EngineError::config(msg).at(CHAIN);
        let mut all: Vec<Py<Kernel>> = Vec::new();
        for (i, item) in kernels.try_iter()?.enumerate() {
            let item = item?;
            let kernel = match item.cast::<Kernel>() {
                Ok(k) => k.clone().unbind(),
                Err(_) => {
                    let class = item.get_type().name()?;
                    return Err(config(format!("item {i} is a {class}, not a Kernel"))).py_err(py);
                }
            };
            if let Some(j) = all.iter().position(|k| k.is(&kernel)) {
                return Err(config(format!(
                    "item {i} is the same kernel as item {j}; a kernel holds one stream, so it \
                     can appear only once"
                )))
                .py_err(py);
            }
            all.push(kernel);
        }
        if all.is_empty() {
            return Err(config("a chain needs at least one kernel".to_owned())).py_err(py);
        }
        let active = all
            .iter()
            .filter(|k| !k.get().is_pass_through())
            .map(|k| k.clone_ref(py))
            .collect();
        Ok(Self {
            kernels: all,
            active,
            buffers: Mutex::new(chain::Buffers::new()),
        })
    }

    /// Runs one `(channels, samples)` float32 block at `sample_rate` Hz through every kernel.
    fn process<'py>(
        &self,
        py: Python<'py>,
        samples: &Bound<'py, PyAny>,
        sample_rate: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        // Input errors name the stage that reads the input.
        let first = self.first();
        let (input, sample_rate) = read_audio(samples, sample_rate)
            .map_err(|e| e.at(first))
            .py_err(py)?;
        let block = input.block();
        if self.active.is_empty() {
            // Only pass-throughs: checked as each of them checks, then the same object back.
            check_block(block, sample_rate)
                .map_err(|e| e.at(first))
                .py_err(py)?;
            return Ok(vec![samples.clone()]);
        }
        // `chain::process` checks the block once, for the first stage.
        let blocks = self.run(py, |stages, buffers| {
            chain::process(stages, block, sample_rate, buffers)
        })?;
        Ok(to_list(py, blocks))
    }

    /// Ends the stream: flushes each kernel in turn, pushing its tail through the ones after it.
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let blocks = self.run(py, chain::flush)?;
        Ok(to_list(py, blocks))
    }

    /// Drops every kernel's stream state.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |stages, _| chain::reset(stages))
    }

    /// The sample rate the chain emits for input at `input_rate` Hz.
    fn output_rate(&self, py: Python<'_>, input_rate: &Bound<'_, PyAny>) -> PyResult<u32> {
        // A bad rate is the input's fault: named as input errors are.
        let first = self.first();
        let mut rate = args::rate(input_rate)
            .and_then(check_rate)
            .map_err(|e| e.at(first))
            .py_err(py)?;
        for k in &self.active {
            rate = k
                .get()
                .with_stage(py, |s| s.output_rate(rate as i64))
                .py_err(py)?;
        }
        Ok(rate)
    }

    fn __len__(&self) -> usize {
        self.kernels.len()
    }

    fn __repr__(&self) -> String {
        let names: Vec<String> = self
            .kernels
            .iter()
            .map(|k| format!("{:?}", k.get().name()))
            .collect();
        format!("<Chain [{}]>", names.join(", "))
    }
}
