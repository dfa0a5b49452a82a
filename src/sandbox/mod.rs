//! Linux namespaces sandbox: pure specs and plans, a thin syscall seam, the
//! in-child init, the launcher and the stage network. Never imports `pipeline`.
