"""The emulated edge cluster: each device of a plan in its own network namespace, its links veth pairs
shaped to the plan's bandwidths, and `edgec run` over real TCP between them (`edgec cluster …`,
`edgec run OUT --emulate`). Linux only, and root only; imported only by those commands."""
