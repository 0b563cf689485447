"""The VTA backend (`vta`): stages on a `vta` resource read as integer layers (`int_layers`), each compiled
to a VTA program (`layer_programs`, with the code generator of `edgec.vta`), stored beside the
stage's sub-model and described in the manifest's `vta` section (`section`); the nodes VTA cannot
run are listed there with the reason, and run on the device's CPU (`runtime/vta_stage.py`)."""
