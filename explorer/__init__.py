"""Design-space exploration: profile a model, cost plans analytically, search them, emit plan files.

`graph_facts` reads what a plan's cost depends on from the model (node order, weights,
boundary tensors); `units` groups nodes between candidate split points; `cost_model` turns a
profile and a platform into stage times, throughput, latency, memory and energy; `chain_dp`
is the exact optimum of the throughput objective on chains; `search` is NSGA-II (pymoo) over
a split-point encoding; `plan_text` writes `.edge` files; `measure` runs candidates for real.
Nothing here is imported by `edgec compile`: the CLI imports it inside `edgec profile` and
`edgec explore`.
"""
