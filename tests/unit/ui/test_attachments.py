"""The images waiting for the next message: kept only for a model that sees them, explained otherwise."""

from app.errors import ModelNotFound
from app.ui.attachments import Attachments
from tests.unit.conftest import run
from tests.unit.ui.test_chat import CAT

VLMS = ["Phi-3.5-vision-instruct-q4f16_1-MLC", "Phi-3.5-vision-instruct-q4f32_1-MLC"]


def make(sees, switch_error=None):
    asked, switched = [], []

    async def support():
        asked.append(1)
        return {"sees": sees, "by": "m" if sees else None, "vision_models": VLMS}

    async def switch(model):
        switched.append(model)
        if switch_error:
            raise switch_error

    return Attachments(support=support, switch=switch), asked, switched


def test_images_wait_for_a_model_that_sees_and_bad_files_say_why():
    attachments, asked, _ = make(True)
    run(attachments.add([CAT, {"name": "x.bmp", "error": "x.bmp is image/bmp"}]))
    run(attachments.add([CAT] * 8))
    assert len(attachments.images.peek()) == 8 and len(asked) == 1  # asked once until forget()
    assert attachments.said.peek() == "At most 8 images go with one message; 1 left out."
    attachments.remove(0)
    assert len(attachments.images.peek()) == 7
    assert attachments.take() == [CAT] * 7 and attachments.images.peek() == () and attachments.said.peek() == ""
    attachments.forget()
    run(attachments.check())
    assert len(asked) == 2


def test_a_text_only_model_attaches_nothing_and_offers_a_vision_model():
    attachments, _, switched = make(False)
    run(attachments.add([CAT]))
    assert attachments.images.peek() == ()
    assert attachments.said.peek().startswith("The chosen model cannot see images, so nothing was attached.")
    assert VLMS[0] in attachments.said.peek() and attachments.offer.peek() == VLMS[0]
    run(attachments.switch_offered())
    assert switched == [VLMS[0]] and attachments.known is None and "can see images" in attachments.said.peek()
    failing, _, _ = make(False, ModelNotFound("gone"))
    failing.explain({"sees": False, "vision_models": VLMS})
    assert failing.said.peek() == f"The chosen model cannot see images. Models that can: {', '.join(VLMS)}."
    run(failing.switch_offered())
    assert failing.said.peek().startswith(f"{VLMS[0]} could not load: ModelNotFound")
