//! Tool contracts (seed 004) for Python: which data tags a tool may
//! receive, which response fields the agent may see, which agents may call
//! which tools. A thin wrapper of `tame_engine::Contracts` (tame-safety's, re-exported by the engine).

use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::Error;
use crate::convert::{json_to_py, py_to_json};

/// Compiled tool contracts and agent bindings.
#[pyclass(frozen, module = "tame._native")]
#[derive(Debug)]
pub struct Contracts {
    inner: tame_engine::Contracts,
}

pub(crate) fn tags_arg(tags: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    match tags {
        None => Ok(Vec::new()),
        Some(t) if t.is_none() => Ok(Vec::new()),
        Some(t) if t.is_instance_of::<PyString>() => Ok(vec![t.extract()?]),
        Some(t) => t
            .extract()
            .map_err(|_| PyTypeError::new_err("data_tags must be a list of strings")),
    }
}

pub(crate) fn to_py<'py, T: serde::Serialize>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    let json = serde_json::to_value(value)
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("cannot convert a result: {e}")))?;
    json_to_py(py, &json)
}

#[pymethods]
impl Contracts {
    /// Reads YAML text with `tool_contracts:` and/or `agents:` sections.
    #[staticmethod]
    fn from_yaml(text: &str) -> PyResult<Contracts> {
        let inner = tame_engine::Contracts::from_yaml(text).map_err(Error::Contract)?;
        Ok(Contracts { inner })
    }

    /// Reads a YAML file with `tool_contracts:` and/or `agents:` sections.
    #[staticmethod]
    fn from_file(path: std::path::PathBuf) -> PyResult<Contracts> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(format!("contracts file not found: {shown}")),
            _ => PyOSError::new_err(format!("cannot read contracts file {shown}: {e}")),
        })?;
        let inner = tame_engine::Contracts::from_yaml(&text).map_err(|mut e| {
            for item in &mut e.errors {
                item.message = format!("{}: {}", shown, item.message);
            }
            Error::Contract(e)
        })?;
        Ok(Contracts { inner })
    }

    /// `{"allowed", "reason"}`: may `tool_name` receive data with these tags?
    #[pyo3(signature = (tool_name, data_tags = None))]
    fn validate_tool_request<'py>(
        &self,
        py: Python<'py>,
        tool_name: &str,
        data_tags: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let tags = tags_arg(data_tags)?;
        to_py(py, &self.inner.validate_tool_request(tool_name, &tags))
    }

    /// `{"allowed", "reason"}`: may this agent call `tool_name`?
    #[pyo3(signature = (agent_id, tool_name))]
    fn validate_agent<'py>(
        &self,
        py: Python<'py>,
        agent_id: Option<&str>,
        tool_name: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.validate_agent(agent_id, tool_name))
    }

    /// `{"action", "payload", "reason", "findings", "detected_tags"}`.
    #[pyo3(signature = (tool_name, payload, data_tags = None, agent_id = None))]
    fn intercept_tool_request<'py>(
        &self,
        py: Python<'py>,
        tool_name: &str,
        payload: &Bound<'_, PyAny>,
        data_tags: Option<&Bound<'_, PyAny>>,
        agent_id: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let tags = tags_arg(data_tags)?;
        let payload = py_to_json(payload, "payload").map_err(Error::from)?;
        to_py(
            py,
            &self.inner.intercept_tool_request(tool_name, &payload, &tags, agent_id),
        )
    }

    /// `{"safe_response", "stripped_fields", "findings"}`.
    fn intercept_tool_response<'py>(
        &self,
        py: Python<'py>,
        tool_name: &str,
        response: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let response = py_to_json(response, "response").map_err(Error::from)?;
        to_py(py, &self.inner.intercept_tool_response(tool_name, &response))
    }
}

/// Secrets and personal data found in a JSON-like payload (list of dicts:
/// kind, category, path, location, start, end, preview).
#[pyfunction]
pub fn scan_payload<'py>(py: Python<'py>, payload: &Bound<'_, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let payload = py_to_json(payload, "payload").map_err(Error::from)?;
    to_py(py, &tame_engine::Scanner::global().scan_report(&payload).findings)
}
