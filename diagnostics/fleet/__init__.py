"""The same report on every node of a GPU fleet, through the engine the fleet already runs.

- `identity`: who a node is (`report --node-id`, `$SLURMD_NODENAME`, `$NODE_NAME`, host name) and
  the host facts a fleet needs, written into every report's JSON as `node`.
- `slurm`: `fleet run --engine slurm`, one `srun` step with one task per node.
- `load` / `merge` / `render`: read node reports (files, directories, `kubectl logs` output),
  group nodes by their blocking causes, show drift between nodes, write `resolution-fleet.*`.
- `manifest`: a Kubernetes DaemonSet or indexed Job, or an `sbatch` script, that runs the report on
  every GPU node.
"""
