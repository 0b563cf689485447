"""Running compiled outputs: in one process (`edgec verify`) and, later, distributed over MPI."""
