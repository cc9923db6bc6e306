"""The application's DR state at run time: its Deployment scaled through a region's own Kubernetes API, its rollout
waited for as `kubectl rollout status` waits, and the region's own health endpoint."""
