"""`bptrace exercise --format prairielearn`: a PrairieLearn question folder (info.json,
question.html, server.py) whose server.py draws a variant from PrairieLearn's
`variant_seed` and grades a submission with bptrace's own check, through the Python API.

PrairieLearn's question format (v3): info.json holds uuid, title, topic, tags and type;
question.html holds the elements (here one `pl-matrix-input` per asked step); server.py's
`generate(data)` fills `data["params"]` and `data["correct_answers"]`, and `grade(data)`
reads `data["submitted_answers"]` and sets `data["partial_scores"]` and `data["score"]`.
A matrix answer travels as PrairieLearn's JSON form of a numpy array,
`{"_type": "ndarray", "_value": [[...]], "_dtype": "float64"}`.
"""
from __future__ import annotations

import json
import os
import uuid

# the namespace of every question's uuid: the same template always gives the same uuid
NAMESPACE = uuid.UUID("5a0f3a43-6d4e-4b8e-9a63-8c1f0e6b7d21")


def answer_name(step: str) -> str:
    """A step name as a PrairieLearn answers-name (letters, digits and `_`)."""
    return step.replace(".", "_")


def question_files(template, *, topic: str = "Backpropagation") -> dict:
    """file name -> text of the question folder."""
    from .exercise import draw

    identity = uuid.uuid5(NAMESPACE, template.text)
    title = str(template.base.get("name") or "bptrace exercise")
    info = {"uuid": str(identity), "title": title, "topic": topic,
            "tags": ["bptrace", "backpropagation"], "type": "v3"}
    # a template whose constraints no draw meets is refused here, not on the first student's page
    draw(template, 0)
    inputs = {name: f'<pl-matrix-input answers-name="{answer_name(name)}" label="${_math(name)} =$" '
                    f'comparison="relabs" rtol="1e-6" atol="1e-9"></pl-matrix-input>'
              for name in template.ask}
    question = ("<pl-question-panel>\n{{{params.sheet}}}\n</pl-question-panel>\n\n"
                + "\n".join(f"<p><code>{name}</code></p>\n{inputs[name]}" for name in template.ask)
                + "\n\n<pl-submission-panel>\n{{{feedback.bptrace}}}\n</pl-submission-panel>\n")
    server = SERVER.replace("@FILE@", repr(os.path.basename(template.file or ""))).replace("@TEXT@", repr(template.text))
    return {"info.json": json.dumps(info, indent=2) + "\n", "question.html": question, "server.py": server}


def _math(name: str) -> str:
    return r"\mathtt{" + name.replace("_", r"\_") + "}"


SERVER = '''"""PrairieLearn question written by `bptrace exercise --format prairielearn`: each variant is
bptrace's draw of the template below with PrairieLearn's variant_seed, graded by bptrace check."""
import bptrace
from bptrace.prairielearn import generate_data, grade_data

TEMPLATE = @TEXT@
TEMPLATE_FILE = @FILE@


def generate(data):
    generate_data(data, TEMPLATE, TEMPLATE_FILE)


def grade(data):
    grade_data(data)
'''


def _template(text: str, file: str):
    from .exercise import load_template

    return load_template(file or "template.yaml", text=text)


def _ndarray(values) -> dict:
    return {"_type": "ndarray", "_value": values, "_dtype": "float64"}


def _matrix(values) -> list:
    """An answer as the 2-D matrix pl-matrix-input shows: a vector is one row, a number 1×1."""
    if not isinstance(values, list):
        return [[float(values)]]
    if not isinstance(values[0], list):
        return [[float(v) for v in values]]
    import numpy as np

    array = np.asarray(values, dtype=float)
    return array.reshape(-1, array.shape[-1]).tolist()


def generate_data(data: dict, text: str, file: str = ""):
    """PrairieLearn's generate(): the variant of `data["variant_seed"]`, its sheet, and the
    correct answers."""
    import bptrace

    from .exercise import sheet_view
    from .render.sheet import html_body

    template = _template(text, file)
    variant = bptrace.variant(template, int(data["variant_seed"]) % (2 ** 63))
    view = sheet_view(variant)
    params = data.setdefault("params", {})
    params["variant"] = variant.text
    params["seed"] = variant.seed
    params["ask"] = list(variant.ask)
    params["sheet"] = html_body(view, asked=False)
    answers = data.setdefault("correct_answers", {})
    for name in variant.ask:
        answers[answer_name(name)] = _ndarray(_matrix(_plain(variant.answers[name])))


def _plain(values):
    return [_plain(v) for v in values] if isinstance(values, list) else float(values)


def _submitted(value):
    if isinstance(value, dict) and "_value" in value:
        value = value["_value"]
    return value


def grade_data(data: dict):
    """PrairieLearn's grade(): every submitted matrix checked by bptrace against the variant
    in `data["params"]`; an answer's score is its share of right numbers, the question's
    score their average, and bptrace's verdict of each wrong number is its feedback."""
    import numpy as np

    import bptrace

    params = data["params"]
    trace = bptrace.run(bptrace.load(params["variant"]))
    submitted, scores, feedback = data.get("submitted_answers", {}), {}, []
    for name in params["ask"]:
        key = answer_name(name)
        value = _submitted(submitted.get(key))
        if value is None:
            scores[key] = {"score": 0.0, "feedback": "no answer"}
            feedback.append(f"{name}: no answer")
            continue
        try:
            array = np.asarray(value, dtype=float).reshape([d for d in trace[name].shape if d != 1] or ())
        except (TypeError, ValueError):
            scores[key] = {"score": 0.0, "feedback": f"{name} has {trace[name].values.size} numbers"}
            feedback.append(f"{name}: wrong shape, it has {trace[name].values.size} numbers")
            continue
        report = trace.check({name: array.tolist()})
        rows = report.files[0].rows
        if report.files[0].error or not rows:
            scores[key] = {"score": 0.0, "feedback": report.files[0].error or "not checked"}
            feedback.append(f"{name}: {scores[key]['feedback']}")
            continue
        right = sum(1 for row in rows if row.passed)
        wrong = [f"{row.label}: {row.how}" for row in rows if not row.passed]
        scores[key] = {"score": right / len(rows), "feedback": "; ".join(wrong) or "right"}
        feedback += wrong
    data["partial_scores"] = {**data.get("partial_scores", {}), **scores}
    data["score"] = sum(item["score"] for item in scores.values()) / len(scores) if scores else 0.0
    data.setdefault("feedback", {})["bptrace"] = "<br>".join(feedback) if feedback else "every number right"
