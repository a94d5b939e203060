"""Every public name of the inference path says what it is (`help(bachsformer)` leads somewhere)."""
import importlib
import inspect
import pkgutil

import bachsformer


def test_every_public_function_class_and_method_has_a_docstring():
    modules = ["bachsformer"] + [f"bachsformer.{m.name}" for m in pkgutil.iter_modules(bachsformer.__path__)
                                 if not m.ispkg and m.name != "__main__"]
    missing = []
    for name in modules:
        module = importlib.import_module(name)
        assert inspect.getdoc(module), f"{name} has no module docstring"
        for attribute, value in vars(module).items():
            if attribute.startswith("_") or getattr(value, "__module__", None) != name:
                continue
            if inspect.isfunction(value) or inspect.isclass(value):
                if not inspect.getdoc(value):
                    missing.append(f"{name}.{attribute}")
                members = vars(value).items() if inspect.isclass(value) else []
                missing += [f"{name}.{attribute}.{m}" for m, f in members
                            if not m.startswith("_") and inspect.isfunction(f) and not inspect.getdoc(f)]
    assert not missing, missing


def test_help_of_the_package_leads_to_the_model():
    assert "Bachsformer.from_checkpoints()" in bachsformer.__doc__
    assert "`num_samples` new pieces" in inspect.getdoc(bachsformer.Bachsformer.generate)
    assert "to_musicxml" in bachsformer.__doc__ and "regenerate" in bachsformer.__doc__
