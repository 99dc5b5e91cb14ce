"""The lab's Kubernetes API server (`server`), its controllers, server-side tables and container texts."""
