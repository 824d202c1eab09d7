"""The graph's nodes, one module per chain-of-thought step, named as the steps are."""
