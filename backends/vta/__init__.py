"""The VTA backend's reading of quantized stages (`int_layers`): the integer layers VTA runs and the
nodes that stay on the device's CPU. The code generator and simulator live in `edgec.vta`."""
