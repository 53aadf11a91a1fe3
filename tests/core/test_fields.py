"""core.fields: settings defined once. The definitions build the config (without JAX), check it,
document it, give the transforms their defaults and the study its search spaces."""
import inspect
import subprocess
import sys

import ml_collections
import pytest

from core.fields import Field, Section, unit_interval
from tests import REPO

DEMO = Section("demo", "a demo section", dict(
    width=Field(8, "width", minimum=1),
    kind=Field("a", "a | b", choices=("a", "b")),
    decay=unit_interval(0.9, "a decay rate", grid=(0.8, 0.9)),
    names=Field({}, "free-form"),
    inner=Section("demo.inner", "nested", dict(flag=Field(False, "a flag"))),
), rules=(lambda v: "demo.width must be even" if v["width"] % 2 else "",),
    search=dict(lr=((1e-3, 1e-2), 1e-2)), search_with_lr=("decay",))


def test_config_dict_holds_the_defaults_and_free_form_dicts():
    c = DEMO.config_dict()
    assert (c.width, c.kind, c.decay, c.inner.flag) == (8, "a", 0.9, False)
    c.names = {"x": 1}  # a dict field takes any dict (a FieldReference of object type)
    assert c.names == {"x": 1}
    with pytest.raises(TypeError):
        c.width = "wide"  # the ConfigDict keeps the definition's type


@pytest.mark.parametrize("values, message", [
    (dict(width=0), r"demo.width=0 must be >= 1 \(width\)"),
    (dict(kind="c"), "demo.kind='c' is not one of a, b"),
    (dict(decay=1.0), "demo.decay=1.0 must be < 1.0"),
    (dict(decay=float("nan")), "is not a finite number"),
    (dict(width=3), "demo.width must be even"),
])
def test_check_names_the_field_the_value_and_what_is_allowed(values, message):
    config = {**DEMO.config_dict().to_dict(), **values}
    with pytest.raises(ValueError, match=message):
        DEMO.check(config)


def test_rows_and_search_space():
    assert ("demo.inner.flag", False, "a flag") in DEMO.rows()
    assert DEMO.search_space() == dict(grids={"lr": [1e-3, 1e-2], "decay": [0.8, 0.9]},
                                       start={"lr": 1e-2, "decay": 0.9}, line=["decay"])


def test_defaults_of_fills_the_signature_from_the_definitions():
    @DEMO.defaults_of(exclude=("names",))
    def transform(x, *, width, kind, decay, extra=None):
        return x, width, kind, decay, extra

    assert transform(1) == (1, 8, "a", 0.9, None)
    assert transform(1, kind="b") == (1, 8, "b", 0.9, None)
    params = inspect.signature(transform).parameters
    assert params["width"].default == 8 and params["decay"].default == 0.9
    with pytest.raises(TypeError, match="not taken"):
        @DEMO.defaults_of()
        def missing(*, width):  # a field the function does not take, and not excluded
            return width


def test_every_transform_signature_reads_its_definition():
    """The custom transforms' defaults are their Section's, except where a function keeps the
    reference API's None (off) for a config's 0, and AdEMAMix's weight decay (the reference's 0;
    the config's 0.1 is the paper's LM setting)."""
    from optim import adalayer, ademamix, shampoo, soap, sophia
    from optim.hparams import HYPERPARAMETERS as H
    for fn, name in ((soap.soap, "soap"), (soap.scale_by_soap, "soap"),
                     (sophia.sophia, "sophia"), (adalayer.adalayer, "adalayer"),
                     (shampoo.shampoo, "shampoo"), (ademamix.ademamix, "ademamix"),
                     (ademamix.simplified_ademamix, "simplified_ademamix")):
        params = inspect.signature(fn).parameters
        for key, field in H[name].fields.items():
            if (key in params and params[key].default is not None
                    and (name, key) != ("ademamix", "weight_decay")):
                assert params[key].default == field.default, (name, key)


def test_building_a_config_loads_no_jax():
    code = ("import sys; from configs import base, help; import data.prepare; "
            "base.get_config('d256_l4'); help.field_docs(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_run_config_is_the_definitions():
    """Every leaf of configs/base.py's config comes from a definition, with its doc."""
    from configs import base
    from configs import help as config_help
    docs = config_help.field_docs()
    leaves = config_help.rows(base.get_config(), docs)
    assert leaves and all(doc for _, _, doc in leaves), [n for n, _, d in leaves if not d]
    assert isinstance(base.get_config(), ml_collections.ConfigDict)
