import einc.ir


def test_mapping_imports_ir_from_ir_folder():
    assert einc.ir.__file__.replace("\\", "/").split("/")[-2] == "ir"
