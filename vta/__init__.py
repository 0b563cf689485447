"""VTA (Versatile Tensor Accelerator) support: the ISA, a bit-exact functional simulator, a lint
for programs the hardware would not run, a cycle model, and int8 Conv/Gemm code generation."""
