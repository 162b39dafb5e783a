"""What ships beside the hub but is not the hub: the demo scenarios (`nrm demo`), the
benchmark (`nrm bench`) and the harness that links several country hubs on one machine.
They use the product (`services`, `contracts`); the product imports them only where
`nrm demo` and `nrm bench` hand over to them."""
