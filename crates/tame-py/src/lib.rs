//! `tame._native`: the embedded Tame engine for Python (pyo3).
//!
//! A thin layer over the `tame_engine` facade and the enforcement path
//! (`tame_enforce`): it converts Python objects to call data (with depth
//! limits and errors that name the offending field), keeps sessions,
//! approvals and the log in the enforcement path's in-memory store, lets
//! Python callables serve as host functions in conditions, and maps every
//! error to a Python exception. No policy logic lives here.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use tame_enforce::{
    ApprovalDecision, ApprovalState, Call, CallStep, Enforcer, MemoryStore, SessionCell, SessionSource as _,
    SessionState,
};
use tame_engine::{Action, NoFacts, Policy, Request, SessionFacts};

mod contracts;
mod convert;
mod host;

use convert::{ConvertError, json_to_py, py_to_json};

create_exception!(
    tame,
    TameError,
    PyException,
    "Base class of the embedded engine's errors."
);
create_exception!(
    tame,
    EnforceError,
    TameError,
    "A call, result or approval step the embedded store refused. Attributes: \
     `status` (the HTTP status a Tame server answers it with: 422, 403, 404 \
     or 409) and `field` (the JSON path of a malformed field, or None)."
);
create_exception!(
    tame,
    PolicyError,
    TameError,
    "A policy that cannot be loaded. Attributes: `file`, `line`, `column` \
     (1-based, of the first error), `rendered` (every diagnostic, with carets) \
     and `diagnostics` (a list of dicts: severity, message, file, line, \
     column, rule, help, rendered)."
);

/// Every failure of this module, mapped to Python exceptions in one place.
#[derive(Debug)]
pub(crate) enum Error {
    /// The policy did not compile.
    Policy(tame_engine::PolicyError),
    /// A Python argument of the wrong type.
    Type(String),
    /// A Python argument of the right type with a bad value.
    Value(String),
    /// Tool contracts that do not load.
    Contract(tame_engine::ContractError),
    /// Session facts given as JSON are malformed.
    Request(tame_engine::RequestError),
    /// The enforcement path refused a call, a result or an approval step.
    Enforce(tame_enforce::EnforceError),
    /// A host function could not be registered.
    Register(String),
    /// A host function called `evaluate` on the engine evaluating it.
    Reentrant,
    /// A failure of the Python interpreter itself (already an exception).
    Python(PyErr),
}

impl From<PyErr> for Error {
    fn from(e: PyErr) -> Self {
        Error::Python(e)
    }
}

impl From<ConvertError> for Error {
    fn from(e: ConvertError) -> Self {
        match e {
            ConvertError::Type(m) => Error::Type(m),
            ConvertError::Value(m) => Error::Value(m),
            ConvertError::Python(e) => Error::Python(e),
        }
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> Self {
        match e {
            Error::Policy(err) => policy_error(&err),
            Error::Type(m) => PyTypeError::new_err(m),
            Error::Value(m) => PyValueError::new_err(m),
            Error::Request(err) => PyValueError::new_err(err.to_string()),
            Error::Enforce(err) => enforce_error(&err),
            Error::Contract(err) => PyValueError::new_err(err.to_string()),
            Error::Register(m) => PyValueError::new_err(m),
            Error::Reentrant => PyRuntimeError::new_err(
                "`evaluate` was called from a host function while an evaluation runs on this thread",
            ),
            Error::Python(err) => err,
        }
    }
}

/// Builds an `EnforceError` carrying the status and field.
fn enforce_error(err: &tame_enforce::EnforceError) -> PyErr {
    Python::attach(|py| {
        let exc = EnforceError::new_err(err.to_string());
        let value = exc.value(py);
        let field = match err {
            tame_enforce::EnforceError::Call(e) => Some(e.path.clone()),
            _ => None,
        };
        let set = || -> PyResult<()> {
            value.setattr("status", err.status())?;
            value.setattr("field", field)?;
            Ok(())
        };
        match set() {
            Ok(()) => exc,
            Err(e) => e,
        }
    })
}

/// Builds a `PolicyError` carrying the diagnostics as attributes.
fn policy_error(err: &tame_engine::PolicyError) -> PyErr {
    Python::attach(|py| {
        let first = err.errors().next().or(err.diagnostics.first());
        let rendered = err.to_string();
        let message = match first {
            Some(d) if d.line > 0 => format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message),
            Some(d) => format!("{}: {}", d.file, d.message),
            None => rendered.clone(),
        };
        let exc = PolicyError::new_err(message);
        let value = exc.value(py);
        let set = || -> PyResult<()> {
            value.setattr("file", first.map(|d| d.file.clone()))?;
            value.setattr("line", first.map(|d| d.line))?;
            value.setattr("column", first.map(|d| d.column))?;
            value.setattr("rendered", rendered.clone())?;
            let diags = serde_json::to_value(&err.diagnostics).unwrap_or(serde_json::Value::Null);
            value.setattr("diagnostics", json_to_py(py, &diags)?)?;
            Ok(())
        };
        match set() {
            Ok(()) => exc,
            Err(e) => e,
        }
    })
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

thread_local! {
    /// Set while this thread evaluates, to refuse re-entrant calls from host
    /// functions (which would deadlock on the session's lock).
    static EVALUATING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

struct EvalGuard;

impl EvalGuard {
    fn enter() -> Result<EvalGuard> {
        if EVALUATING.with(|e| e.replace(true)) {
            return Err(Error::Reentrant);
        }
        Ok(EvalGuard)
    }
}

impl Drop for EvalGuard {
    fn drop(&mut self) {
        EVALUATING.with(|e| e.set(false));
    }
}

/// The decision about one call.
#[pyclass(frozen, module = "tame._native")]
#[derive(Debug)]
struct Decision {
    inner: tame_engine::Decision,
}

#[pymethods]
impl Decision {
    /// `"allow"`, `"deny"` or `"approve"`.
    #[getter]
    fn action(&self) -> &'static str {
        self.inner.action.as_str()
    }
    /// The matching rule, `None` when the policy's default applied.
    #[getter]
    fn rule_name(&self) -> Option<&str> {
        self.inner.rule_name.as_deref()
    }
    #[getter]
    fn reason(&self) -> &str {
        &self.inner.reason
    }
    #[getter]
    fn policy_version(&self) -> &str {
        &self.inner.policy_version
    }
    #[getter]
    fn is_allowed(&self) -> bool {
        self.inner.action == Action::Allow
    }
    #[getter]
    fn is_denied(&self) -> bool {
        self.inner.action == Action::Deny
    }
    #[getter]
    fn requires_approval(&self) -> bool {
        self.inner.action == Action::Approve
    }
    /// `{"decision", "rule_name", "reason", "policy_version"}`, the server's field names.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("decision", self.inner.action.as_str())?;
        d.set_item("rule_name", self.inner.rule_name.as_deref())?;
        d.set_item("reason", &*self.inner.reason)?;
        d.set_item("policy_version", &*self.inner.policy_version)?;
        Ok(d)
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        match other.cast::<Decision>() {
            Ok(o) => o.get().inner == self.inner,
            Err(_) => false,
        }
    }
    fn __repr__(&self) -> String {
        let rule = match self.inner.rule_name.as_deref() {
            Some(r) => format!("{r:?}"),
            None => "None".to_owned(),
        };
        format!(
            "Decision(action={:?}, rule_name={rule}, reason={:?})",
            self.inner.action.as_str(),
            &*self.inner.reason
        )
    }
}

/// A compiled policy evaluated in-process, with in-memory session facts.
#[pyclass(frozen, weakref, module = "tame._native")]
struct Engine {
    policy: RwLock<Arc<Policy>>,
    source: String,
    origin: String,
    functions: Mutex<host::Functions>,
    /// Sessions, approvals and the log (the enforcement path's store).
    store: MemoryStore,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Engine {
    fn compile(source: &str, origin: &str, functions: &host::Functions) -> Result<Policy> {
        functions.compile(source, origin)
    }

    fn load(source: String, origin: String, functions: host::Functions, log_capacity: usize) -> Result<Engine> {
        let policy = Engine::compile(&source, &origin, &functions)?;
        Ok(Engine {
            policy: RwLock::new(Arc::new(policy)),
            source,
            origin,
            functions: Mutex::new(functions),
            store: MemoryStore::with_log_capacity(log_capacity),
        })
    }

    fn current(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The state of session `id` (created empty when new).
    fn session(&self, id: &str) -> tame_enforce::SessionHandle {
        match self.store.session_state(&MemoryStore::key(id), false) {
            Ok(cell) => cell,
            // The in-memory store always has a state to give.
            Err(_) => Arc::new(SessionCell::default()),
        }
    }

    fn request(
        tool_name: &Bound<'_, PyAny>,
        tool_args: Option<&Bound<'_, PyAny>>,
        session_id: Option<&str>,
        agent_id: Option<&str>,
        user_id: Option<&str>,
        metadata: Option<&Bound<'_, PyAny>>,
    ) -> Result<Request> {
        let tool = tool_name
            .cast::<PyString>()
            .map_err(|_| Error::Type(format!("tool_name must be a string, got {}", type_name(tool_name))))?;
        let tool = tool.to_cow()?;
        if tool.trim().is_empty() {
            return Err(Error::Value("tool_name must not be empty".into()));
        }
        let args = convert::object_arg(tool_args, "tool_args")?;
        let meta = convert::object_arg(metadata, "metadata")?;
        let mut req = Request::new(&tool, args);
        req.metadata = meta;
        req.session_id = session_id.map(Arc::from);
        req.agent_id = agent_id.map(Arc::from);
        req.user_id = user_id.map(Arc::from);
        Ok(req)
    }

    /// Runs `f` with the session's state (none without a session id), then
    /// records the decided call in it when `record` gives a decision (the
    /// counts-as-run rule is the state's).
    fn with_facts<T>(
        &self,
        py: Python<'_>,
        req: &Request,
        record: impl FnOnce(&T) -> Option<&tame_engine::Decision>,
        f: impl FnOnce(&dyn SessionFacts) -> T,
    ) -> Result<T> {
        let _guard = EvalGuard::enter()?;
        let Some(sid) = req.session_id.as_deref() else {
            return Ok(f(&NoFacts));
        };
        let cell = self.session(sid);
        let mut state = lock_detached(py, &cell);
        let out = f(&state.view(req.now));
        if let Some(decision) = record(&out) {
            state.record(CallStep::decided(req, decision));
        }
        Ok(out)
    }
}

/// Locks a session's state; while another thread holds it (inside a host
/// function, which may let go of the GIL), waits without the GIL.
fn lock_detached<'a>(py: Python<'_>, cell: &'a SessionCell) -> MutexGuard<'a, SessionState> {
    loop {
        if let Some(guard) = cell.try_lock() {
            break guard;
        }
        py.detach(std::thread::yield_now);
    }
}

/// The JSON of a Python object argument (`body`, `result`).
fn json_arg(obj: &Bound<'_, PyAny>, what: &str) -> Result<serde_json::Value> {
    Ok(py_to_json(obj, what)?)
}

fn to_py<'py, T: serde::Serialize>(py: Python<'py>, value: &T, what: &str) -> PyResult<Bound<'py, PyAny>> {
    let json =
        serde_json::to_value(value).map_err(|e| PyRuntimeError::new_err(format!("cannot convert the {what}: {e}")))?;
    json_to_py(py, &json)
}

/// Reads `params=[...]`: a list of type names.
fn params_arg(params: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    match params {
        None => Ok(Vec::new()),
        Some(p) if p.is_none() => Ok(Vec::new()),
        Some(p) => {
            if p.is_instance_of::<PyString>() {
                return Err(PyTypeError::new_err(
                    "params must be a list of type names, not a string",
                ));
            }
            p.extract()
                .map_err(|_| PyTypeError::new_err(format!("params must be a list of type names, got {}", type_name(p))))
        }
    }
}

/// Parameter types of a callable registered without `params`: one `dyn`
/// per positional parameter of its signature.
fn infer_params(func: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    let py = func.py();
    let inspect = py.import("inspect")?;
    let sig = inspect
        .call_method1("signature", (func,))
        .map_err(|_| PyTypeError::new_err("cannot read the callable's signature: pass params=[...]"))?;
    let kinds = inspect.getattr("Parameter")?;
    let positional = [
        kinds.getattr("POSITIONAL_ONLY")?,
        kinds.getattr("POSITIONAL_OR_KEYWORD")?,
    ];
    let mut out = Vec::new();
    for p in sig.getattr("parameters")?.call_method0("values")?.try_iter()? {
        let kind = p?.getattr("kind")?;
        if positional.iter().any(|k| k.eq(&kind).unwrap_or(false)) {
            out.push("dyn".to_owned());
        }
    }
    Ok(out)
}

/// Reads `functions={name: callable | (callable, params, returns)}`.
fn functions_arg(functions: Option<&Bound<'_, PyAny>>) -> PyResult<host::Functions> {
    let mut out = host::Functions::default();
    let Some(functions) = functions.filter(|f| !f.is_none()) else {
        return Ok(out);
    };
    let dict = functions.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!(
            "functions must be a dict of name to callable, got {}",
            type_name(functions)
        ))
    })?;
    for (name, spec) in dict.iter() {
        let name: String = name
            .extract()
            .map_err(|_| PyTypeError::new_err("functions: names must be strings"))?;
        let (func, params, returns) = if spec.is_callable() {
            (spec.clone(), infer_params(&spec)?, "dyn".to_owned())
        } else if let Ok(t) = spec.cast::<pyo3::types::PyTuple>() {
            let bad = || {
                PyTypeError::new_err(format!(
                    "functions[{name:?}]: expected a callable or (callable, params, returns)"
                ))
            };
            if t.len() != 3 {
                return Err(bad());
            }
            let func = t.get_item(0)?;
            if !func.is_callable() {
                return Err(bad());
            }
            let params = params_arg(Some(&t.get_item(1)?))?;
            let returns: String = t.get_item(2)?.extract().map_err(|_| bad())?;
            (func, params, returns)
        } else {
            return Err(PyTypeError::new_err(format!(
                "functions[{name:?}]: expected a callable or (callable, params, returns), got {}",
                type_name(&spec)
            )));
        };
        out.add(&name, func.unbind(), &params, &returns)
            .map_err(|m| PyValueError::new_err(format!("functions[{name:?}]: {m}")))?;
    }
    Ok(out)
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

#[pymethods]
impl Engine {
    /// Loads and compiles a policy file (current or legacy format).
    /// `functions` maps host function names to a callable or to a tuple
    /// `(callable, params, returns)` (see `register_function`).
    #[staticmethod]
    #[pyo3(signature = (path, functions = None, log_capacity = tame_enforce::DEFAULT_LOG_CAPACITY))]
    fn from_file(
        path: &Bound<'_, PyAny>,
        functions: Option<&Bound<'_, PyAny>>,
        log_capacity: usize,
    ) -> PyResult<Engine> {
        let functions = functions_arg(functions)?;
        let os = path.py().import("os")?;
        let fspath = os
            .call_method1("fspath", (path,))
            .map_err(|_| PyTypeError::new_err(format!("path must be a str or os.PathLike, got {}", type_name(path))))?;
        let path: String = fspath
            .extract()
            .map_err(|_| PyTypeError::new_err("path must be a text path, not bytes"))?;
        let source = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(format!("policy file not found: {path}")),
            _ => PyOSError::new_err(format!("cannot read policy file {path}: {e}")),
        })?;
        Ok(Engine::load(source, path, functions, log_capacity)?)
    }

    /// Compiles policy text; `name` is used in diagnostics. `log_capacity`:
    /// how many log entries `enforce` keeps (the newest).
    #[staticmethod]
    #[pyo3(signature = (text, name = "<string>", functions = None, log_capacity = tame_enforce::DEFAULT_LOG_CAPACITY))]
    fn from_str(
        text: &Bound<'_, PyAny>,
        name: &str,
        functions: Option<&Bound<'_, PyAny>>,
        log_capacity: usize,
    ) -> PyResult<Engine> {
        let functions = functions_arg(functions)?;
        let text = text
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err(format!("policy text must be a str, got {}", type_name(text))))?;
        Ok(Engine::load(
            text.to_cow()?.into_owned(),
            name.to_owned(),
            functions,
            log_capacity,
        )?)
    }

    // The GIL stays held while evaluating: an evaluation takes about a
    // microsecond, less than releasing and re-taking the GIL costs, and
    // host functions written in Python need it anyway.
    /// Decides one call. With a `session_id`, the session's facts are used
    /// and an allowed call is recorded in them (unless `record=False`), as
    /// the server's store counts allowed calls.
    #[pyo3(signature = (tool_name, tool_args = None, session_id = None, agent_id = None, user_id = None, metadata = None, record = true))]
    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &self,
        py: Python<'_>,
        tool_name: &Bound<'_, PyAny>,
        tool_args: Option<&Bound<'_, PyAny>>,
        session_id: Option<&str>,
        agent_id: Option<&str>,
        user_id: Option<&str>,
        metadata: Option<&Bound<'_, PyAny>>,
        record: bool,
    ) -> PyResult<Decision> {
        let req = Engine::request(tool_name, tool_args, session_id, agent_id, user_id, metadata)?;
        let policy = self.current();
        let inner = self.with_facts(
            py,
            &req,
            |d: &tame_engine::Decision| record.then_some(d),
            |facts| policy.evaluate(&req, facts),
        )?;
        Ok(Decision { inner })
    }

    /// Why the policy decides as it does for this call: which rules were
    /// tried, which matched, and the decision (a dict). Records nothing.
    #[pyo3(signature = (tool_name, tool_args = None, session_id = None, agent_id = None, user_id = None, metadata = None))]
    #[allow(clippy::too_many_arguments)]
    fn explain<'py>(
        &self,
        py: Python<'py>,
        tool_name: &Bound<'_, PyAny>,
        tool_args: Option<&Bound<'_, PyAny>>,
        session_id: Option<&str>,
        agent_id: Option<&str>,
        user_id: Option<&str>,
        metadata: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let req = Engine::request(tool_name, tool_args, session_id, agent_id, user_id, metadata)?;
        let policy = self.current();
        let explanation = self.with_facts(py, &req, |_| None, |facts| policy.explain(&req, facts))?;
        let json = serde_json::to_value(&explanation)
            .map_err(|e| PyRuntimeError::new_err(format!("cannot convert the explanation: {e}")))?;
        json_to_py(py, &json)
    }

    /// Registers a Python callable as a host function usable in conditions,
    /// then recompiles the policy with it. `params` and `returns` are type
    /// names (`"string"`, `"int"`, `"double"`, `"bool"`, `"list"`, `"map"`,
    /// `"dyn"`...). The callable gets JSON-like Python values and returns one.
    #[pyo3(signature = (name, func, params = None, returns = "dyn"))]
    fn register_function(
        &self,
        name: &str,
        func: &Bound<'_, PyAny>,
        params: Option<&Bound<'_, PyAny>>,
        returns: &str,
    ) -> PyResult<()> {
        if !func.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "func must be callable, got {}",
                type_name(func)
            )));
        }
        let params = match params {
            Some(p) if !p.is_none() => params_arg(Some(p))?,
            _ => infer_params(func)?,
        };
        let mut functions = lock(&self.functions);
        let mut next = functions.clone();
        next.add(name, func.clone().unbind(), &params, returns)
            .map_err(Error::Value)?;
        let policy = Engine::compile(&self.source, &self.origin, &next)?;
        *functions = next;
        match self.policy.write() {
            Ok(mut p) => *p = Arc::new(policy),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(policy),
        }
        Ok(())
    }

    /// The names of the registered host functions.
    fn functions(&self) -> Vec<String> {
        lock(&self.functions).names()
    }

    /// The policy: version, description, hash, default, legacy, rules_count, rules.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let policy = self.current();
        let mut json = serde_json::to_value(policy.info())
            .map_err(|e| PyRuntimeError::new_err(format!("cannot convert the policy info: {e}")))?;
        if let serde_json::Value::Object(obj) = &mut json {
            let count = obj.get("rules").and_then(|r| r.as_array()).map(Vec::len);
            if let Some(count) = count {
                obj.entry("rules_count").or_insert(count.into());
            }
        }
        json_to_py(py, &json)
    }

    /// The tool's response filtered by its contract in the policy:
    /// `{"safe_response", "stripped_fields", "findings"}`.
    fn filter_response<'py>(
        &self,
        py: Python<'py>,
        tool_name: &str,
        response: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let response = py_to_json(response, "response").map_err(Error::from)?;
        contracts::to_py(py, &self.current().filter_response(tool_name, &response))
    }

    /// `{"allowed", "reason"}`: may `tool_name` receive data with these tags
    /// (the policy's `tool_contracts:`)?
    #[pyo3(signature = (tool_name, data_tags = None))]
    fn validate_tool_request<'py>(
        &self,
        py: Python<'py>,
        tool_name: &str,
        data_tags: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let tags = contracts::tags_arg(data_tags)?;
        contracts::to_py(py, &self.current().validate_tool_request(tool_name, &tags))
    }

    /// `{"action", "payload", "reason", "findings", "detected_tags"}` per the
    /// policy's `tool_contracts:` and `agents:`.
    #[pyo3(signature = (tool_name, payload, data_tags = None, agent_id = None))]
    fn intercept_tool_request<'py>(
        &self,
        py: Python<'py>,
        tool_name: &str,
        payload: &Bound<'_, PyAny>,
        data_tags: Option<&Bound<'_, PyAny>>,
        agent_id: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let tags = contracts::tags_arg(data_tags)?;
        let payload = py_to_json(payload, "payload").map_err(Error::from)?;
        let out = self
            .current()
            .intercept_tool_request(tool_name, &payload, &tags, agent_id);
        contracts::to_py(py, &out)
    }

    /// Sizes of the compiled policy: rules, tools_indexed, dag_nodes.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = serde_json::to_value(self.current().stats())
            .map_err(|e| PyRuntimeError::new_err(format!("cannot convert the stats: {e}")))?;
        json_to_py(py, &json)
    }

    /// Warnings about the policy (shadowed rules, legacy values...), as dicts.
    fn lints<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = serde_json::to_value(self.current().lints())
            .map_err(|e| PyRuntimeError::new_err(format!("cannot convert the lints: {e}")))?;
        json_to_py(py, &json)
    }

    /// The decision DAG in Graphviz DOT.
    fn to_dot(&self) -> String {
        self.current().to_dot()
    }

    /// Where the policy came from (a path, or the `name` of `from_str`).
    #[getter]
    fn origin(&self) -> &str {
        &self.origin
    }

    /// The policy's version string.
    #[getter]
    fn version(&self) -> String {
        self.current().version().to_owned()
    }

    /// The session's facts: `{"calls": n, "labels": [...]}`; `count(tool)`
    /// gives per-tool counts.
    fn session_facts<'py>(&self, py: Python<'py>, session_id: &str) -> PyResult<Bound<'py, PyDict>> {
        let cell = self.session(session_id);
        let state = lock_detached(py, &cell);
        let d = PyDict::new(py);
        d.set_item("calls", state.calls())?;
        let labels: Vec<String> = state.labels().iter().map(|l| l.to_string()).collect();
        d.set_item("labels", labels)?;
        Ok(d)
    }

    /// Calls of `tool` recorded in the session (those that ran).
    fn session_count(&self, py: Python<'_>, session_id: &str, tool: &str) -> i64 {
        let cell = self.session(session_id);
        let state = lock_detached(py, &cell);
        state.count(tool, None, jiff::Timestamp::now())
    }

    /// Replaces a session's facts with fixed ones:
    /// `{"calls": 3, "counts": {"send_email": 2}, "called": [...], "labels": [...]}`.
    fn set_session_facts(&self, session_id: &str, facts: &Bound<'_, PyAny>) -> PyResult<()> {
        let json = py_to_json(facts, "facts").map_err(Error::from)?;
        let parsed = SessionState::from_json(&json).map_err(Error::Request)?;
        self.store.seed_session(&MemoryStore::key(session_id), parsed);
        Ok(())
    }

    /// Attaches a label (e.g. `secret_read`) to a session.
    fn add_session_label(&self, py: Python<'_>, session_id: &str, label: &str) {
        let cell = self.session(session_id);
        lock_detached(py, &cell).add_label(label);
    }

    /// Forgets a session's facts.
    fn reset_session(&self, session_id: &str) {
        self.store.reset_session(&MemoryStore::key(session_id));
    }

    /// The ids of the sessions with facts.
    fn sessions(&self) -> Vec<String> {
        self.store.session_ids()
    }

    /// Enforces one call through the enforcement path, as `POST
    /// /api/v1/enforce` does: `body` is the request (`tool_name`,
    /// `tool_args`, `session_id`, `agent_id`, `user_id`, `metadata`,
    /// `approval_id`); the answer is the server's (`session_id`,
    /// `decision`, `rule_name`, `reason`, `policy_version`, `log_id`,
    /// `timestamp`, `approval_id` for `approve`, `sanitized_args` when the
    /// policy redacted arguments). The decision is logged and recorded in
    /// the session; an `approve` opens an approval; a call that comes back
    /// with a decided approval is released by it (once). Raises
    /// `EnforceError` (with the server's `status`) for a malformed call or
    /// an approval that cannot release it.
    fn enforce<'py>(&self, py: Python<'py>, body: &Bound<'_, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let body = json_arg(body, "body")?;
        let call = Call::from_json(body).map_err(|e| Error::Enforce(e.into()))?;
        let policy = self.current();
        let enforcer = Enforcer::with_policy(&policy);
        let outcome = {
            let _guard = EvalGuard::enter()?;
            self.store
                .enforce_with(&enforcer, call, |cell| lock_detached(py, cell))
                .map_err(Error::Enforce)?
        };
        let mut answer = serde_json::json!({
            "session_id": outcome.session_id,
            "decision": outcome.decision.action,
            "rule_name": outcome.decision.rule_name.as_deref(),
            "reason": &*outcome.decision.reason,
            "policy_version": &*outcome.decision.policy_version,
            "log_id": outcome.log_id,
            "timestamp": tame_enforce::format_timestamp(outcome.timestamp),
        });
        if let serde_json::Value::Object(fields) = &mut answer {
            if let Some(id) = outcome.approval_id() {
                fields.insert("approval_id".into(), id.into());
            }
            if let Some(args) = outcome.sanitized_args {
                fields.insert("sanitized_args".into(), args);
            }
        }
        json_to_py(py, &answer)
    }

    /// Records a tool's result for log entry `log_id` of `session_id`, as
    /// `POST /api/v1/enforce/{session_id}/result` does; what it reveals
    /// labels the session. Returns `{"status": "updated", "log_id",
    /// "labels"}`. Raises `EnforceError` (404: unknown log entry, 403:
    /// another session's, 422: a malformed result).
    fn record_result<'py>(
        &self,
        py: Python<'py>,
        session_id: &str,
        log_id: &str,
        result: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let body = json_arg(result, "result")?;
        let policy = self.current();
        let enforcer = Enforcer::with_policy(&policy);
        let recorded = self
            .store
            .record_result(&enforcer, session_id, log_id, body)
            .map_err(Error::Enforce)?;
        let answer = serde_json::json!({"status": "updated", "log_id": log_id, "labels": recorded.labels});
        json_to_py(py, &answer)
    }

    /// Records what the user asked in session `session_id` (the trusted
    /// principal's words: `from_input(x)` and `session.inputs` read them),
    /// as `POST /api/v1/sessions/{session_id}/inputs` does. Returns
    /// `{"recorded": "input", "session_id", "input_id"}`. Raises
    /// `TypeError` when an argument is not a string and `ValueError` for
    /// an empty session id or text, or a text over the size limit (each
    /// naming the argument).
    fn record_input<'py>(
        &self,
        py: Python<'py>,
        session_id: &Bound<'_, PyAny>,
        text: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let string = |obj: &Bound<'_, PyAny>, name: &str| -> Result<String> {
            let s = obj
                .cast::<PyString>()
                .map_err(|_| Error::Type(format!("{name} must be a string, got {}", type_name(obj))))?;
            Ok(s.to_cow()?.into_owned())
        };
        let session_id = string(session_id, "session_id")?;
        let text = string(text, "text")?;
        if session_id.trim().is_empty() {
            return Err(Error::Value("session_id must not be empty".into()).into());
        }
        let policy = self.current();
        let enforcer = Enforcer::with_policy(&policy);
        let body = serde_json::json!({ "text": text });
        let recorded = self
            .store
            .record_input(&enforcer, &session_id, &body)
            .map_err(|e| match e {
                // Refused for its value (empty, too long): the argument names it.
                tame_enforce::EnforceError::Call(e) => Error::Value(format!("{}: {}", e.path, e.message)),
                other => Error::Enforce(other),
            })?;
        let answer = serde_json::json!({
            "recorded": "input",
            "session_id": session_id,
            "input_id": recorded.record.input_id,
        });
        json_to_py(py, &answer)
    }

    /// Approves (`approve=True`) or rejects a pending approval; returns it.
    /// Raises `EnforceError` (404: unknown, 409: no longer pending).
    #[pyo3(signature = (approval_id, approve, by = None, reason = None))]
    fn decide_approval<'py>(
        &self,
        py: Python<'py>,
        approval_id: &str,
        approve: bool,
        by: Option<String>,
        reason: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let decided = self
            .store
            .decide_approval(ApprovalDecision {
                id: approval_id.to_owned(),
                approve,
                by,
                reason,
                at: jiff::Timestamp::now(),
            })
            .map_err(|e| Error::Enforce(e.into()))?;
        to_py(py, &decided, "approval")
    }

    /// One approval (a dict in the server's shape), or None.
    fn approval<'py>(&self, py: Python<'py>, approval_id: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.store
            .approval(approval_id, jiff::Timestamp::now())
            .map(|a| to_py(py, &a, "approval"))
            .transpose()
    }

    /// The approvals, newest first: those in `state` (`pending`,
    /// `approved`, `rejected`, `expired`), or all.
    #[pyo3(signature = (state = None))]
    fn approvals<'py>(&self, py: Python<'py>, state: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
        let filter = match state {
            None | Some("all") => None,
            Some(s) => Some(ApprovalState::parse(s).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "state: expected pending, approved, rejected, expired or all, found `{s}`"
                ))
            })?),
        };
        to_py(py, &self.store.approvals(filter, jiff::Timestamp::now()), "approvals")
    }

    /// Waits at most `timeout` seconds for an approval to be decided (the
    /// GIL released meanwhile); returns it as it then stands, or None for
    /// an unknown approval.
    fn wait_approval<'py>(
        &self,
        py: Python<'py>,
        approval_id: &str,
        timeout: f64,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
        let found = py.detach(|| self.store.wait_approval(approval_id, timeout));
        found.map(|a| to_py(py, &a, "approval")).transpose()
    }

    /// A session's logged decisions, oldest first (each with its result),
    /// or None for a session that logged nothing.
    fn session_log<'py>(&self, py: Python<'py>, session_id: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.store
            .session_log(&MemoryStore::key(session_id))
            .map(|log| to_py(py, &log, "log"))
            .transpose()
    }

    /// One session's summary (`total_calls`, `allowed_calls`, ...), or None.
    fn session_summary<'py>(&self, py: Python<'py>, session_id: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.store
            .session_summary(&MemoryStore::key(session_id))
            .map(|s| to_py(py, &s, "summary"))
            .transpose()
    }

    /// Every logged session's summary, latest activity first.
    fn session_summaries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.store.session_summaries(), "summaries")
    }

    fn __repr__(&self) -> String {
        let policy = self.current();
        format!(
            "Engine(origin={:?}, version={:?}, rules={})",
            self.origin,
            policy.version(),
            policy.stats().rules
        )
    }
}

/// Converts a Python value to JSON text's value model and back: the same
/// conversion `evaluate` applies to `tool_args` (for tests and debugging).
#[pyfunction]
fn to_call_value<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let v = convert::py_to_value(value, "value").map_err(Error::from)?;
    json_to_py(py, &tame_engine::value_to_json(&v))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Engine>()?;
    m.add_class::<Decision>()?;
    m.add_class::<contracts::Contracts>()?;
    m.add("TameError", py.get_type::<TameError>())?;
    m.add("PolicyError", py.get_type::<PolicyError>())?;
    m.add("EnforceError", py.get_type::<EnforceError>())?;
    m.add_function(wrap_pyfunction!(to_call_value, m)?)?;
    m.add_function(wrap_pyfunction!(contracts::scan_payload, m)?)?;
    Ok(())
}
