"""The app's screens: main, confirmation modals, help, and the command palette's commands."""
