"""Images waiting to go with the next message, and what the attach control says.

    attachments = Attachments(support=session.image_support, switch=session.use_model)
    await attachments.add(images)        # what app.ffi.images gave: kept, or why not (``said``)
    chat.send(text, attachments.take())  # the images leave with the message

Only a model that sees images takes them (``support()`` says, from the catalog's model_type or the
endpoint's preset). Otherwise nothing is attached: ``said`` explains which models can see images and
``offer`` names one to switch to (``switch_offered()``). No DOM here (app/ui/view.py shows it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from app.errors import AppError
from app.params import MAX_IMAGES_PER_REQUEST
from app.ui.store import Signal, batch


class Attachments:
    """See the module docstring."""

    def __init__(self, *, support: Callable[[], Awaitable[dict[str, Any]]],
                 switch: Callable[[str], Awaitable[Any]]) -> None:
        self._support = support
        self._switch = switch
        self.images: Signal[tuple[dict[str, Any], ...]] = Signal(())
        self.said: Signal[str] = Signal("")  # why a file was not attached, why the model cannot see
        self.offer: Signal[str | None] = Signal(None)  # a vision model to switch to
        self.known: dict[str, Any] | None = None  # the last answer of support(), until forget()

    async def check(self) -> dict[str, Any]:
        """Whether the chat's model sees images now (asked once until :meth:`forget`)."""
        if self.known is None:
            self.known = await self._support()
        return self.known

    def forget(self) -> None:
        """The chosen model or endpoint changed: ask again next time."""
        self.known = None

    def explain(self, support: dict[str, Any], *, refused: bool = False) -> None:
        """Say that the chosen model cannot see images, which can, and offer one (``refused``: files
        were given, and none was attached)."""
        models = support.get("vision_models") or []
        said = "The chosen model cannot see images" + (", so nothing was attached." if refused else ".")
        if models:
            said += f" Models that can: {', '.join(models)}."
        else:
            said += " No model in this catalog can; an endpoint whose preset declares vision can."
        with batch():
            self.said.set(said)
            self.offer.set(models[0] if models else None)

    async def add(self, results: list[dict[str, Any]]) -> None:
        """Attach the images among ``results``; each file that could not be read says why."""
        support = await self.check()
        if not support.get("sees"):
            self.explain(support, refused=True)
            return
        good = [dict(r) for r in results if isinstance(r, dict) and r.get("url")]
        said = [str(r.get("error")) for r in results if isinstance(r, dict) and r.get("error")]
        room = MAX_IMAGES_PER_REQUEST - len(self.images.peek())
        if len(good) > room:
            said.append(f"At most {MAX_IMAGES_PER_REQUEST} images go with one message; "
                        f"{len(good) - room} left out.")
            good = good[:max(room, 0)]
        with batch():
            self.images.set((*self.images.peek(), *good))
            self.said.set(" ".join(said))
            self.offer.set(None)

    def remove(self, index: int) -> None:
        images = list(self.images.peek())
        if 0 <= index < len(images):
            del images[index]
            self.images.set(tuple(images))

    def take(self) -> list[dict[str, Any]]:
        """The images to send now (and none wait any more)."""
        images = list(self.images.peek())
        with batch():
            self.images.set(())
            self.said.set("")
        return images

    async def switch_offered(self) -> None:
        """Chat with the offered vision model from now on (it loads now)."""
        model = self.offer.peek()
        if model is None:
            return
        with batch():
            self.offer.set(None)
            self.said.set(f"Switching to {model} …")
        self.forget()
        try:
            await self._switch(model)
        except AppError as exc:
            self.said.set(f"{model} could not load: {type(exc).__name__}: {exc}")
            return
        self.said.set(f"{model} can see images: attach them now.")
