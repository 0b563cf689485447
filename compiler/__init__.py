"""The compiler core: the IR wrapper (`Program`), platform model, diagnostics and PassManager."""
