"""The footer's key hints, most important first, so that a narrow terminal (80 columns) still shows `? Help` and
`q Quit`; they are there from the first frame, not only after the bindings first change."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey  # Textual's own key widget (not exported from textual.widgets)

# binding ids, in the order a person needs them; any other shown binding follows, in its own order
ORDER = ("help", "quit", "action.run", "action.cancel", "refresh", "filter", "copy", "pause")


class KeyHints(Footer):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, show_command_palette=False, compact=True)

    def compose(self) -> ComposeResult:
        shown: dict[str, tuple[object, bool, str]] = {}
        for _namespace, binding, enabled, tooltip in self.screen.active_bindings.values():
            if binding.show and binding.action not in shown:
                shown[binding.action] = (binding, enabled, tooltip)

        def rank(item: tuple[object, bool, str]) -> int:
            binding_id = getattr(item[0], "id", None)
            return ORDER.index(binding_id) if binding_id in ORDER else len(ORDER)

        for binding, enabled, tooltip in sorted(shown.values(), key=rank):
            yield FooterKey(binding.key, self.app.get_key_display(binding), binding.description,  # type: ignore[attr-defined]
                            binding.action, disabled=not enabled,  # type: ignore[attr-defined]
                            tooltip=tooltip or binding.description).data_bind(compact=Footer.compact)  # type: ignore[attr-defined]
        if self.app.ENABLE_COMMAND_PALETTE:
            yield FooterKey(self.app.COMMAND_PALETTE_BINDING, "^p", "Palette", "app.command_palette",
                            tooltip="every action, stage and pane by name").data_bind(compact=Footer.compact)
