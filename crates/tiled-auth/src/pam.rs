//! Passwords checked by the operating system through PAM: upstream's
//! `tiled.authenticators:PAMAuthenticator` (args `service`, default
//! `"login"`; upstream's `confirmation_message` is accepted too).
//!
//! Linux-PAM's `libpam.so.0` is opened at run time (the first time a
//! [`PamAuthenticator`] is made, or [`PamAuthenticator::available`] is
//! asked), so building needs neither PAM headers nor a link against it. A
//! machine without it gets an error when the configuration is read, not
//! at the first login.
//!
//! A login is what upstream does (through `pamela`): `pam_start(service,
//! user)`, `pam_authenticate`, `pam_acct_mgmt` (expired or locked
//! accounts fail), `pam_end`. The conversation answers hidden prompts
//! with the password and echoed ones with the username; informational
//! messages are ignored and anything else fails the login. Empty
//! passwords never succeed (`PAM_DISALLOW_NULL_AUTHTOK`), even for
//! accounts that PAM would let in without one.
//!
//! PAM calls block (the service's modules may sleep seconds after a wrong
//! password); call [`PasswordAuthenticator::authenticate`] from a blocking
//! thread. Each call has its own PAM handle.
//!
//! Who can check passwords: `pam_unix` reads `/etc/shadow`, so the server
//! must run as root or as a user allowed to read it (group `shadow` on
//! Debian); otherwise `pam_unix` falls back to its `unix_chkpwd` helper,
//! which checks only the password of the user the process runs as.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use serde_json::Value;

use crate::{AuthError, PasswordAuthenticator};

/// Upstream's default service.
pub const DEFAULT_SERVICE: &str = "login";

/// The library opened at run time.
const LIBRARY: &str = "libpam.so.0";

// From Linux-PAM's <security/_pam_types.h>.
const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_SILENT: c_int = 0x8000;
const PAM_DISALLOW_NULL_AUTHTOK: c_int = 0x0001;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;
const PAM_MAX_NUM_MSG: c_int = 32;

/// `struct pam_message`.
#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

/// `struct pam_response`.
#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

/// The conversation function's type in `struct pam_conv`.
type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *const *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

/// `struct pam_conv`.
#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

/// `pam_handle_t`, only ever behind a pointer.
#[repr(C)]
struct PamHandle {
    _opaque: [u8; 0],
}

type StartFn = unsafe extern "C" fn(
    service_name: *const c_char,
    user: *const c_char,
    pam_conversation: *const PamConv,
    pamh: *mut *mut PamHandle,
) -> c_int;
/// `pam_authenticate`, `pam_acct_mgmt` and `pam_end` (whose int is the
/// last status rather than flags).
type HandleFn = unsafe extern "C" fn(pamh: *mut PamHandle, flags: c_int) -> c_int;

/// The four functions of `libpam.so.0` a login needs.
struct Library {
    start: StartFn,
    authenticate: HandleFn,
    acct_mgmt: HandleFn,
    end: HandleFn,
    /// Kept open for the process's life: it lives in a static that is
    /// never dropped, so the function pointers above stay valid.
    _library: libloading::Library,
}

impl Library {
    fn load() -> Result<Library, String> {
        // SAFETY: opening a library runs its initialisers. libpam.so.0 is
        // the system's Linux-PAM, whose initialisers have no preconditions
        // on the caller (any program may link it).
        let library = unsafe { libloading::Library::new(LIBRARY) }.map_err(|e| {
            format!(
                "cannot load {LIBRARY} (Linux-PAM) at run time: {}",
                describe(&e)
            )
        })?;
        let missing =
            |e: libloading::Error| format!("{LIBRARY} is not a usable Linux-PAM: {}", describe(&e));
        // SAFETY: each type is the C declaration of that function in
        // Linux-PAM's <security/pam_appl.h> (pointer and int arguments,
        // int result). The pointers are copied out of their `Symbol`s,
        // which is sound because `library` is stored next to them and the
        // only `Library` lives in a never-dropped static (see `pam`).
        unsafe {
            Ok(Library {
                start: *library.get::<StartFn>(c"pam_start").map_err(missing)?,
                authenticate: *library
                    .get::<HandleFn>(c"pam_authenticate")
                    .map_err(missing)?,
                acct_mgmt: *library.get::<HandleFn>(c"pam_acct_mgmt").map_err(missing)?,
                end: *library.get::<HandleFn>(c"pam_end").map_err(missing)?,
                _library: library,
            })
        }
    }
}

/// A libloading error with the dynamic loader's own words (its `source`).
fn describe(e: &libloading::Error) -> String {
    match std::error::Error::source(e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

/// The process's one copy of the library, opened on first use.
fn pam() -> Result<&'static Library, String> {
    static PAM: OnceLock<Result<Library, String>> = OnceLock::new();
    PAM.get_or_init(Library::load)
        .as_ref()
        .map_err(Clone::clone)
}

/// What the conversation answers with; lives on the stack of
/// [`PamAuthenticator::check`] for the whole PAM transaction.
struct Credentials<'a> {
    username: &'a CStr,
    password: &'a CStr,
}

/// A `malloc`ed copy of `text` (PAM frees answers with `free`, so they
/// must not come from Rust's allocator); null if allocation fails.
fn malloc_copy(text: &CStr) -> *mut c_char {
    let bytes = text.to_bytes_with_nul();
    // SAFETY: `malloc` has no preconditions; the copy writes
    // `bytes.len()` bytes into a fresh block of that size, after checking
    // it is not null.
    unsafe {
        let copy = libc::malloc(bytes.len()).cast::<c_char>();
        if !copy.is_null() {
            ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), copy, bytes.len());
        }
        copy
    }
}

/// Free answers of a failed conversation (wiping the strings, which may
/// hold the password).
///
/// # Safety
/// `replies` is a `calloc`ed array of `n` responses whose `resp` are null
/// or `malloc`ed NUL-terminated strings.
unsafe fn free_replies(replies: *mut PamResponse, n: usize) {
    // SAFETY: per the function's contract.
    unsafe {
        for i in 0..n {
            let resp = (*replies.add(i)).resp;
            if !resp.is_null() {
                ptr::write_bytes(resp, 0, libc::strlen(resp));
                libc::free(resp.cast());
            }
        }
        libc::free(replies.cast());
    }
}

/// The conversation: PAM asks, we answer from the [`Credentials`] at
/// `appdata_ptr`.
///
/// # Safety
/// Called by Linux-PAM only, as `struct pam_conv` specifies: `msg` points
/// to `num_msg` pointers to messages, `resp` is writable, and
/// `appdata_ptr` is the one given to `pam_start` (a live `Credentials`).
unsafe extern "C" fn converse(
    num_msg: c_int,
    msg: *const *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int {
    if msg.is_null() || resp.is_null() || appdata_ptr.is_null() {
        return PAM_CONV_ERR;
    }
    if !(1..=PAM_MAX_NUM_MSG).contains(&num_msg) {
        return PAM_CONV_ERR;
    }
    let n = num_msg as usize;
    // SAFETY: per the function's contract; `appdata_ptr` outlives the PAM
    // handle (see `check`). The answer array is `calloc`ed (zeroed: null
    // `resp`, retcode 0) and each message pointer is checked for null
    // before it is read. On success PAM owns and frees the array and its
    // strings; on failure we free them and leave `*resp` untouched.
    unsafe {
        let credentials = &*appdata_ptr.cast::<Credentials<'_>>();
        let replies = libc::calloc(n, std::mem::size_of::<PamResponse>()).cast::<PamResponse>();
        if replies.is_null() {
            return PAM_BUF_ERR;
        }
        for i in 0..n {
            let message = *msg.add(i);
            if message.is_null() {
                free_replies(replies, n);
                return PAM_CONV_ERR;
            }
            let answer = match (*message).msg_style {
                PAM_PROMPT_ECHO_OFF => credentials.password,
                PAM_PROMPT_ECHO_ON => credentials.username,
                PAM_ERROR_MSG | PAM_TEXT_INFO => continue,
                // Binary prompts and anything unknown: we cannot answer.
                _ => {
                    free_replies(replies, n);
                    return PAM_CONV_ERR;
                }
            };
            let copy = malloc_copy(answer);
            if copy.is_null() {
                free_replies(replies, n);
                return PAM_BUF_ERR;
            }
            (*replies.add(i)).resp = copy;
        }
        *resp = replies;
    }
    PAM_SUCCESS
}

/// Checks passwords with a PAM service.
#[derive(Debug)]
pub struct PamAuthenticator {
    service: CString,
}

impl PamAuthenticator {
    /// Whether `libpam.so.0` can be used here.
    ///
    /// # Errors
    /// Why not (for a configuration error).
    pub fn available() -> Result<(), String> {
        pam().map(|_| ())
    }

    /// Check passwords with `service` (a file in `/etc/pam.d`).
    ///
    /// # Errors
    /// [`AuthError::BadRequest`] if the service name is empty or holds
    /// `/` or NUL, or libpam cannot be loaded.
    pub fn new(service: &str) -> Result<Self, AuthError> {
        if service.is_empty() || service.contains('/') {
            return Err(AuthError::BadRequest(format!(
                "PAM service {service:?}: expected a name from /etc/pam.d, such as \"login\""
            )));
        }
        let service = CString::new(service)
            .map_err(|_| AuthError::BadRequest("PAM service: the name holds a NUL byte".into()))?;
        Self::available().map_err(AuthError::BadRequest)?;
        let path = std::path::Path::new("/etc/pam.d").join(service.to_string_lossy().as_ref());
        if std::path::Path::new("/etc/pam.d").is_dir() && !path.exists() {
            tracing::warn!(
                "PAM service {:?} has no {}: PAM will use its \"other\" service",
                service,
                path.display()
            );
        }
        Ok(PamAuthenticator { service })
    }

    /// From upstream's config `args`: `{service: login,
    /// confirmation_message: ...}`, both optional (`null` is no args).
    ///
    /// # Errors
    /// [`AuthError::BadRequest`] naming an unknown or mistyped argument, or
    /// as [`PamAuthenticator::new`].
    pub fn from_args(args: &Value) -> Result<Self, AuthError> {
        Self::new(&service_from_args(args)?)
    }

    /// The PAM service.
    pub fn service(&self) -> &str {
        self.service.to_str().unwrap_or_default()
    }

    /// One PAM transaction; whether it succeeded.
    fn check(&self, username: &str, password: &str) -> bool {
        // An empty name would make PAM prompt for one; NUL bytes cannot
        // reach C (and name nobody).
        if username.is_empty() {
            return false;
        }
        let (Ok(user), Ok(pass)) = (CString::new(username), CString::new(password)) else {
            return false;
        };
        let Ok(pam) = pam() else {
            return false;
        };
        let credentials = Credentials {
            username: &user,
            password: &pass,
        };
        let conv = PamConv {
            conv: Some(converse),
            appdata_ptr: ptr::from_ref(&credentials).cast_mut().cast(),
        };
        let mut handle: *mut PamHandle = ptr::null_mut();
        let flags = PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK;
        // SAFETY: the strings are NUL-terminated and, like `conv` and the
        // `credentials` it points to (only read by `converse`), outlive
        // the handle, which is ended below on every path; the handle is
        // used only after `pam_start` succeeded and set it.
        unsafe {
            let status = (pam.start)(self.service.as_ptr(), user.as_ptr(), &conv, &mut handle);
            if status != PAM_SUCCESS || handle.is_null() {
                tracing::warn!(
                    service = ?self.service,
                    status,
                    "pam_start failed; refusing the login"
                );
                return false;
            }
            let mut status = (pam.authenticate)(handle, flags);
            if status == PAM_SUCCESS {
                status = (pam.acct_mgmt)(handle, flags);
            }
            (pam.end)(handle, status);
            status == PAM_SUCCESS
        }
    }
}

/// The `service` of upstream's args (default `"login"`).
///
/// # Errors
/// [`AuthError::BadRequest`] naming an unknown or mistyped argument.
pub fn service_from_args(args: &Value) -> Result<String, AuthError> {
    let map = match args {
        Value::Null => return Ok(DEFAULT_SERVICE.to_string()),
        Value::Object(map) => map,
        other => {
            return Err(AuthError::BadRequest(format!(
                "PAMAuthenticator args: expected a mapping, got {other}"
            )));
        }
    };
    for (key, value) in map {
        match key.as_str() {
            "service" | "confirmation_message" if value.is_string() || value.is_null() => {}
            "service" | "confirmation_message" => {
                return Err(AuthError::BadRequest(format!(
                    "PAMAuthenticator args.{key}: expected a string, got {value}"
                )));
            }
            _ => {
                return Err(AuthError::BadRequest(format!(
                    "PAMAuthenticator args.{key}: unknown argument; expected service or \
                     confirmation_message"
                )));
            }
        }
    }
    Ok(map
        .get("service")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_SERVICE)
        .to_string())
}

impl PasswordAuthenticator for PamAuthenticator {
    fn authenticate(&self, username: &str, password: &str) -> Option<String> {
        self.check(username, password).then(|| username.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn args() {
        assert_eq!(service_from_args(&Value::Null).unwrap(), "login");
        assert_eq!(service_from_args(&json!({})).unwrap(), "login");
        assert_eq!(
            service_from_args(&json!({"service": "tiled", "confirmation_message": "hi"})).unwrap(),
            "tiled"
        );
        let e = service_from_args(&json!({"servce": "x"})).unwrap_err();
        assert!(e.to_string().contains("servce"), "{e}");
        assert!(service_from_args(&json!({"service": 3})).is_err());
        assert!(service_from_args(&json!(["login"])).is_err());
        assert!(PamAuthenticator::new("").is_err());
        assert!(PamAuthenticator::new("../etc/x").is_err());
        assert!(PamAuthenticator::new("lo\0gin").is_err());
    }

    #[test]
    fn odd_names_match_nobody() {
        // Only where libpam is installed; no user has these names.
        let Ok(pam) = PamAuthenticator::new(DEFAULT_SERVICE) else {
            return;
        };
        assert_eq!(pam.authenticate("", "x"), None);
        assert_eq!(pam.authenticate("ro\0ot", "x"), None);
        assert_eq!(pam.authenticate("root", "pass\0word"), None);
    }
}
