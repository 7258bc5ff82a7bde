"""The ARM template language (control_plane/deployments/template): pure, no server.

Covers the lenient JSON reader, every expression form and function family, uniqueString/guid against
the vectors in docs/iac-deployments.md, parameters/variables/resources/outputs, the plan's dependency
graph, ARM's error codes and messages for each malformed construct, and templates in the style of the
container-registry quick-starts and the AVM registry module.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from control_plane.deployments.template import (
    Deferred,
    DeploymentContext,
    JsonParseError,
    Plan,
    TemplateError,
    jsonc,
    parse_template,
    plan,
)
from control_plane.deployments.template.hashing import guid, unique_string

SUB = "00000000-0000-0000-0000-000000000001"
RG_ID = f"/subscriptions/{SUB}/resourceGroups/rg1"
ACR = "Microsoft.ContainerRegistry/registries"
SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"


def context(**overrides: Any) -> DeploymentContext:
    values: dict[str, Any] = {"subscription_id": SUB, "tenant_id": "tenant-1", "deployment_name": "azuredeploy",
                              "resource_group": "rg1", "resource_group_location": "westus",
                              "resource_group_tags": {"env": "test"}, "now": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)}
    values.update(overrides)
    return DeploymentContext(**values)


class FakeRuntime:
    """Stands in for the applier: deployed resources' properties and list* answers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def reference(self, resource_id: str, api_version: str | None, full: bool) -> Any:
        self.calls.append(("reference", resource_id, str(api_version), str(full)))
        name = resource_id.rsplit("/", 1)[-1]
        properties = {"loginServer": f"{name}.azurecr.io", "provisioningState": "Succeeded",
                      "vaultUri": f"https://{name}.vault.azure.net/",
                      "outputs": {"resourceId": {"type": "String", "value": resource_id}}}
        if full:
            return {"id": resource_id, "location": "westus", "identity": {"principalId": "p-1"},
                    "properties": properties}
        return properties

    def invoke_list(self, resource_id: str, action: str, api_version: str | None, body: Any) -> Any:
        self.calls.append(("list", resource_id, action, str(api_version)))
        return {"username": resource_id.rsplit("/", 1)[-1],
                "passwords": [{"name": "password", "value": "pw1"}, {"name": "password2", "value": "pw2"}]}


def template(**sections: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"$schema": SCHEMA, "contentVersion": "1.0.0.0", "resources": []}
    body.update(sections)
    return body


_OUTPUT_TYPES = {str: "string", bool: "bool", int: "int", list: "array", dict: "object"}


def evaluate(expression: str, parameters: dict[str, Any] | None = None, variables: dict[str, Any] | None = None,
             **ctx: Any) -> Any:
    """The value of one expression, evaluated as an output of a tiny template."""
    result = plan(template(parameters=parameters or {}, variables=variables or {},
                           outputs={"o": {"type": "object", "nullable": True, "value": f"[createObject('v', "
                                                                                      f"{expression[1:-1]})]"}}),
                  {}, context(**ctx))
    return result.outputs(FakeRuntime())["o"]["value"]["v"]


def error_of(tpl: Any, parameters: dict[str, Any] | None = None, **ctx: Any) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        plan(tpl, parameters or {}, context(**ctx))
    return caught.value


# --- uniqueString and guid ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (("aaa",), "zavj67f3en4hc"),
    (("bbb",), "w5eragfxe33cy"),
    (("zzz",), "cryksdzzzawae"),
    (("xxx", "yyy", "zzz"), "lghi7k5js7itq"),
    (("asd", "asdf", "asdf"), "iizpqit7ih3cc"),
])
def test_unique_string_matches_arm_vectors(args: tuple[str, ...], expected: str) -> None:
    assert unique_string(*args) == expected
    assert evaluate("[uniqueString(" + ", ".join(f"'{a}'" for a in args) + ")]") == expected


def test_guid_matches_arm_vector_and_joins_with_dash() -> None:
    assert guid("asdf") == "228d27cc-6fdb-5934-b7ac-1efccebade04"
    assert evaluate("[guid('asdf')]") == "228d27cc-6fdb-5934-b7ac-1efccebade04"
    assert evaluate("[guid('a', 'b')]") == guid("a-b")
    assert len(guid("x")) == 36 and guid("x") == guid("x").lower()


# --- the lenient JSON reader --------------------------------------------------------------------------------------


def test_template_text_as_az_sends_it_parses() -> None:
    text = """{
      // a comment
      "$schema": "SCHEMA", /* block */
      contentVersion: '1.0.0.0',
      "parameters": {"p": {"type": "string", "defaultValue": "line1
line2",},},
      "resources": [],
    }""".replace("SCHEMA", SCHEMA)
    parsed = parse_template(text)
    assert parsed["parameters"]["p"]["defaultValue"] == "line1\nline2"
    assert parsed["contentVersion"] == "1.0.0.0"
    assert parsed["parameters"]["p"].line == 5


def test_request_body_with_the_template_spliced_in_by_az() -> None:
    body = jsonc.loads('{"properties": {"parameters": {"acrName": {"value": "myacr"}}, "mode": "Incremental", '
                       'template:{\n  // comment\n  "$schema": "SCHEMA",\n  "resources": [],\n}\n}}'.replace("SCHEMA",
                                                                                                       SCHEMA))
    assert body["properties"]["template"] == {"$schema": SCHEMA, "resources": []}
    assert body["properties"]["parameters"]["acrName"] == {"value": "myacr"}


@pytest.mark.parametrize(("text", "reason", "path", "line", "position"), [
    ('{\n  "resources": [\n    {"name": "a" "type": "b"}\n  ]\n}',
     "After parsing a value an unexpected character was encountered: \".", "resources[0].name", 3, 18),
    ('{\n  "a": }', "Unexpected character encountered while parsing value: }.", "a", 2, 8),
    ('{"a": "x', 'Unterminated string. Expected delimiter: ".', "a", 1, 9),
    ('{"a": 1}\n x', "Additional text encountered after finished reading JSON content: x.", "", 2, 2),
    ('{"a": 1, "a": 2}', "Can not add property a to Newtonsoft.Json.Linq.JObject. Property with the same name "
                         "already exists on object.", "a", 1, 16),
    ('{"a": [1,,2]}', "Unexpected character encountered while parsing value: ,.", "a[1]", 1, 10),
    ('{"a" 1}', "Invalid character after parsing property name. Expected ':' but got: 1.", "a", 1, 6),
    ('{"a": 1 /* open', "Unexpected end while parsing comment.", "a", 1, 16),
])
def test_malformed_json_reports_line_and_position(text: str, reason: str, path: str, line: int,
                                                  position: int) -> None:
    with pytest.raises(JsonParseError) as caught:
        parse_template(text)
    error = caught.value
    assert (error.code, error.line, error.position, error.path) == ("InvalidTemplate", line, position, path)
    assert error.message == f"Deployment template parse failed: '{reason} Path '{path}', line {line}, position " \
                            f"{position}.'."


def test_template_over_4_mb_is_refused() -> None:
    huge = json.dumps(template(variables={"v": "x" * (4 * 1024 * 1024)}))
    error = error_of(huge)
    assert (error.code, error.message) == ("RequestContentTooLarge",
                                           "The request content size exceeds the maximum size of 4 MB.")


def test_unknown_top_level_member_and_missing_resources() -> None:
    error = error_of(parse_template('{"resources": [], "parameterz": {}}'))
    assert error.code == "InvalidTemplate" and "Could not find member 'parameterz'" in error.message
    error = error_of({"$schema": SCHEMA})
    assert "Required property 'resources' not found" in error.message


# --- expression syntax ---------------------------------------------------------------------------------------------


def test_expression_syntax_forms() -> None:
    assert evaluate("[createObject('a', createArray(1, 2, createObject('b', 'c'))).a[2].b]") == "c"
    assert evaluate("[createObject('k', 1)['k']]") == 1
    assert evaluate("[createObject('Name', 'x').name]") == "x"  # property access ignores case
    assert evaluate("[CONCAT('it''s', ' ', ToUpper('a'))]") == "it's A"  # names are case-insensitive
    assert evaluate("[add(-3, 10)]") == 7
    assert evaluate("[  length( 'abc' )  ]") == 3


def test_escapes_and_plain_strings_in_templates() -> None:
    result = plan(template(outputs={
        "escaped": {"type": "string", "value": "[[not an expression]"},
        "open": {"type": "string", "value": "[starts with a bracket"},
        "plain": {"type": "string", "value": "text ]"},
    }), {}, context()).outputs(FakeRuntime())
    assert [result[k]["value"] for k in ("escaped", "open", "plain")] == [
        "[not an expression]", "[starts with a bracket", "text ]"]


def test_values_from_outside_are_literal() -> None:
    result = plan(template(parameters={"p": {"type": "string"}}, outputs={
        "o": {"type": "string", "value": "[parameters('p')]"}}), {"p": {"value": "[concat('a')]"}}, context())
    assert result.outputs(FakeRuntime())["o"]["value"] == "[concat('a')]"


@pytest.mark.parametrize(("expression", "fragment"), [
    ("[concat('a']", "expected token 'RightParenthesis' and actual 'EndOfData'"),
    ("[concat('a') 'b']", "expected token 'EndOfData' and actual 'String'"),
    ("[concat('a'; 'b')]", "the string character ';' at position '10' is not expected"),
    ("[createObject('a', 1).]", "expected token 'Identifier' and actual 'EndOfData'"),
    ("[ ]", "the expression is empty"),
])
def test_malformed_expressions(expression: str, fragment: str) -> None:
    error = error_of(template(variables={"v": expression}))
    assert error.code == "InvalidTemplate"
    assert error.message.startswith("Deployment template validation failed: 'The template variable 'v'")
    assert fragment in error.message


def test_unknown_function_wrong_arity_and_wrong_type() -> None:
    error = error_of(template(variables={"v": "[frobnicate(1)]"}))
    assert "The template function 'frobnicate' is not valid." in error.message
    error = error_of(template(variables={"v": "[substring('abc')]"}))
    assert ("Unable to evaluate template language function 'substring': function requires between '2' and '3' "
            "argument(s) while '1' were provided.") in error.message
    error = error_of(template(variables={"v": "[toLower(1)]"}))
    assert "The template language function 'toLower' expects its parameter to be of type 'String'" in error.message
    assert "The provided value is of type 'Integer'" in error.message
    error = error_of(template(variables={"v": "[createObject('a', 1).b]"}))
    assert "The language expression property 'b' doesn't exist, available properties are 'a'." in error.message
    error = error_of(template(variables={"v": "[createArray(1)[3]]"}))
    assert "The language expression property array index '3' is out of bounds." in error.message


def test_expression_length_and_nesting_limits() -> None:
    error = error_of(template(variables={"v": "[concat('" + "x" * 24600 + "')]"}))
    assert "exceeds the limit of '24576' characters" in error.message
    deep = "[" + "not(" * 70 + "true()" + ")" * 70 + "]"
    error = error_of(template(variables={"v": deep}))
    assert "exceeds the maximum nesting depth of '64'" in error.message


# --- function families -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expression", "expected"), [
    ("[format('{0}-{1}', 'a', 2)]", "a-2"),
    ("[format('{0:N0} {1:N2} {2:D4} {3:X}', 1234567, 3, 42, 255)]", "1,234,567 3.00 0042 FF"),
    ("[format('{{{0}}} {1} {0,3}|{0,-3}|', 'x', true())]", "{x} True   x|x  |"),
    ("[concat('a', 'b', 1)]", "ab1"),
    ("[concat(createArray(1), createArray(2, 3))]", [1, 2, 3]),
    ("[substring('hello', 1, 3)]", "ell"),
    ("[substring('hello', 2)]", "llo"),
    ("[split('a/b//c', '/')]", ["a", "b", "", "c"]),
    ("[split('a,b;c', createArray(',', ';'))]", ["a", "b", "c"]),
    ("[replace('a.b.c', '.', '-')]", "a-b-c"),
    ("[toLower('ABC')]", "abc"),
    ("[toUpper('abc')]", "ABC"),
    ("[trim('  x ')]", "x"),
    ("[padLeft('7', 3, '0')]", "007"),
    ("[padLeft(7, 3)]", "  7"),
    ("[indexOf('ABCabc', 'bc')]", 1),
    ("[lastIndexOf('abcABC', 'BC')]", 4),
    ("[startsWith('Hello', 'he')]", True),
    ("[endsWith('Hello', 'LO')]", True),
    ("[contains('Hello', 'ell')]", True),
    ("[contains('Hello', 'ELL')]", False),
    ("[base64('one, two')]", "b25lLCB0d28="),
    ("[base64ToString('b25lLCB0d28=')]", "one, two"),
    ("[base64ToJson(base64('{\"a\":1}')).a]", 1),
    ("[json('{\"a\": [1, null]}')]", {"a": [1, None]}),
    ("[json('null')]", None),
    ("[string(createObject('a', 1))]", '{"a":1}'),
    ("[string(true())]", "True"),
    ("[string(12)]", "12"),
    ("[uri('http://contoso.org/firstpath', 'myscript.sh')]", "http://contoso.org/myscript.sh"),
    ("[uriComponent('http://contoso.com/resources/nested/azuredeploy.json')]",
     "http%3A%2F%2Fcontoso.com%2Fresources%2Fnested%2Fazuredeploy.json"),
    ("[uriComponentToString('a%20b')]", "a b"),
    ("[dataUri('Hello')]", "data:text/plain;charset=utf8;base64,SGVsbG8="),
    ("[dataUriToString('data:;base64,SGVsbG8sIFdvcmxkIQ==')]", "Hello, World!"),
    ("[first('abc')]", "a"),
    ("[last('abc')]", "c"),
    ("[take('abc', 2)]", "ab"),
    ("[skip('abc', 2)]", "c"),
    ("[length('abc')]", 3),
    ("[empty('')]", True),
])
def test_string_functions(expression: str, expected: Any) -> None:
    assert evaluate(expression) == expected


@pytest.mark.parametrize(("expression", "expected"), [
    ("[createArray(1, 'a', createObject())]", [1, "a", {}]),
    ("[array('x')]", ["x"]),
    ("[array(createArray(1))]", [1]),
    ("[contains(createArray(1, 2), 2)]", True),
    ("[contains(createObject('Key', 1), 'key')]", True),
    ("[empty(createArray())]", True),
    ("[empty(createObject())]", True),
    ("[empty(null())]", True),
    ("[first(createArray(1, 2))]", 1),
    ("[last(createArray(1, 2))]", 2),
    ("[first(createArray())]", None),
    ("[indexOf(createArray('a', 'b'), 'b')]", 1),
    ("[lastIndexOf(createArray(1, 2, 1), 1)]", 2),
    ("[indexOf(createArray(1), 3)]", -1),
    ("[intersection(createArray(1, 2, 3), createArray(2, 3, 4))]", [2, 3]),
    ("[intersection(createObject('a', 1, 'b', 2), createObject('a', 1, 'b', 3))]", {"a": 1}),
    ("[length(createArray(1, 2))]", 2),
    ("[length(createObject('a', 1))]", 1),
    ("[max(createArray(1, 7, 3))]", 7),
    ("[min(4, 2, 9)]", 2),
    ("[range(5, 3)]", [5, 6, 7]),
    ("[skip(createArray(1, 2, 3), 1)]", [2, 3]),
    ("[take(createArray(1, 2, 3), 5)]", [1, 2, 3]),
    ("[union(createArray(1, 2), createArray(2, 3))]", [1, 2, 3]),
    ("[union(createObject('a', 1, 'n', createObject('x', 1)), createObject('b', 2, 'n', createObject('y', 2)))]",
     {"a": 1, "n": {"x": 1, "y": 2}, "b": 2}),
    ("[shallowMerge(createArray(createObject('n', createObject('x', 1)), createObject('n', createObject('y', 2))))]",
     {"n": {"y": 2}}),
    ("[flatten(createArray(createArray(1), createArray(2, 3)))]", [1, 2, 3]),
    ("[items(createObject('b', 2, 'a', 1))]", [{"key": "a", "value": 1}, {"key": "b", "value": 2}]),
    ("[objectKeys(createObject('a', 1, 'b', 2))]", ["a", "b"]),
    ("[createObject()]", {}),
    ("[tryGet(createObject('a', createArray(1, 2)), 'a', 1)]", 2),
    ("[tryGet(createObject('a', 1), 'missing')]", None),
    ("[tryGet(null(), 'a')]", None),
    ("[tryGet(createArray(1), 5)]", None),
    ("[indexFromEnd(createArray(1, 2, 3), 1)]", 3),
    ("[tryIndexFromEnd(createArray(1), 4)]", None),
    ("[null()]", None),
])
def test_array_and_object_functions(expression: str, expected: Any) -> None:
    assert evaluate(expression) == expected


@pytest.mark.parametrize(("expression", "expected"), [
    ("[add(1, 2)]", 3), ("[sub(1, 2)]", -1), ("[mul(3, 4)]", 12), ("[div(7, 2)]", 3), ("[div(-7, 2)]", -3),
    ("[mod(7, 3)]", 1), ("[mod(-7, 3)]", -1), ("[int('42')]", 42), ("[int(4.7)]", 4), ("[float('1.5')]", 1.5),
    ("[equals(createArray(1, createObject('a', 'b')), createArray(1, createObject('A', 'b')))]", True),
    ("[equals('a', 'A')]", False), ("[equals(1, true())]", False),
    ("[greater(2, 1)]", True), ("[greater('b', 'a')]", True), ("[greaterOrEquals(1, 1)]", True),
    ("[less(1, 2)]", True), ("[lessOrEquals(3, 2)]", False),
    ("[coalesce(null(), null(), 'x', 'y')]", "x"), ("[coalesce(null())]", None),
    ("[and(true(), true(), false())]", False), ("[or(false(), true())]", True), ("[not(false())]", True),
    ("[bool('TRUE')]", True), ("[bool(0)]", False), ("[if(equals(1, 1), 'yes', 'no')]", "yes"),
])
def test_numeric_comparison_and_logical_functions(expression: str, expected: Any) -> None:
    assert evaluate(expression) == expected


def test_if_evaluates_only_the_branch_it_takes() -> None:
    assert evaluate("[if(true(), 'ok', div(1, 0))]") == "ok"
    assert evaluate("[if(false(), parameters('missing'), 2)]") == 2
    assert evaluate("[and(false(), div(1, 0))]") is False
    assert evaluate("[or(true(), div(1, 0))]") is True
    assert evaluate("[coalesce('x', div(1, 0))]") == "x"
    error = error_of(template(variables={"v": "[if(true(), div(1, 0), 'x')]"}))
    assert "cannot divide by zero" in error.message
    error = error_of(template(variables={"v": "[if('yes', 1, 2)]"}))
    assert "expects its first parameter to be of type 'Boolean'" in error.message


@pytest.mark.parametrize(("expression", "expected"), [
    ("[dateTimeAdd('2020-04-07 14:53:14Z', 'P3Y')]", "2023-04-07 14:53:14Z"),
    ("[dateTimeAdd('2020-04-07T14:53:14Z', 'PT1H30M', 'yyyy-MM-ddTHH:mm')]", "2020-04-07T16:23"),
    ("[dateTimeAdd('2020-01-31T00:00:00Z', 'P1M', 'yyyy-MM-dd')]", "2020-02-29"),
    ("[dateTimeAdd('20200407T145314Z', '-P1D')]", "20200406T145314Z"),
    ("[dateTimeFromEpoch(1683040573)]", "2023-05-02T15:16:13Z"),
    ("[dateTimeToEpoch('2023-05-02T15:16:13Z')]", 1683040573),
    ("[dateTimeToEpoch(dateTimeAdd('2023-05-02T15:16:13Z', 'PT1S'))]", 1683040574),
])
def test_date_functions(expression: str, expected: Any) -> None:
    assert evaluate(expression) == expected


def test_utc_now_and_new_guid_only_in_parameter_defaults() -> None:
    result = plan(template(parameters={
        "stamp": {"type": "string", "defaultValue": "[utcNow()]"},
        "day": {"type": "string", "defaultValue": "[utcNow('yyyy-MM-dd')]"},
        "id": {"type": "string", "defaultValue": "[newGuid()]"},
    }), {}, context())
    assert result.parameters["stamp"]["value"] == "20240102T030405Z"
    assert result.parameters["day"]["value"] == "2024-01-02"
    assert len(result.parameters["id"]["value"]) == 36
    error = error_of(template(variables={"v": "[utcNow()]"}))
    assert "The template function 'utcNow' is not expected at this location" in error.message


def test_lambda_functions() -> None:
    assert evaluate("[map(range(0, 3), lambda('i', mul(lambdaVariables('i'), 2)))]") == [0, 2, 4]
    assert evaluate("[map(createArray('a', 'b'), lambda('x', 'i', concat(lambdaVariables('x'), "
                    "string(lambdaVariables('i')))))]") == ["a0", "b1"]
    assert evaluate("[filter(range(0, 6), lambda('i', equals(mod(lambdaVariables('i'), 2), 0)))]") == [0, 2, 4]
    assert evaluate("[reduce(range(1, 4), 0, lambda('cur', 'next', add(lambdaVariables('cur'), "
                    "lambdaVariables('next'))))]") == 10
    assert evaluate("[sort(createArray(3, 1, 2), lambda('a', 'b', less(lambdaVariables('a'), "
                    "lambdaVariables('b'))))]") == [1, 2, 3]
    assert evaluate("[toObject(createArray('a', 'b'), lambda('x', lambdaVariables('x')), lambda('x', "
                    "toUpper(lambdaVariables('x'))))]") == {"a": "A", "b": "B"}
    assert evaluate("[groupBy(createArray('ab', 'ac', 'b'), lambda('x', first(lambdaVariables('x'))))]") == {
        "a": ["ab", "ac"], "b": ["b"]}
    assert evaluate("[mapValues(createObject('a', 1), lambda('v', add(lambdaVariables('v'), 1)))]") == {"a": 2}
    # nested lambdas see the outer lambda's variables
    assert evaluate("[map(createArray(1, 2), lambda('x', map(createArray(10), lambda('y', "
                    "add(lambdaVariables('x'), lambdaVariables('y'))))))]") == [[11], [12]]
    error = error_of(template(variables={"v": "[length(lambda('x', lambdaVariables('x')))]"}))
    assert "does not accept lambda expressions" in error.message
    error = error_of(template(variables={"v": "[lambdaVariables('nope')]"}))
    assert "The lambda variable 'nope' is not defined" in error.message


def test_avm_style_reduce_over_null_identities() -> None:
    expression = ("[reduce(map(coalesce(tryGet(parameters('managedIdentities'), 'userAssignedResourceIds'), "
                  "createArray()), lambda('id', createObject(format('{0}', lambdaVariables('id')), createObject()))), "
                  "createObject(), lambda('cur', 'next', union(lambdaVariables('cur'), lambdaVariables('next'))))]")
    parameters = {"managedIdentities": {"type": "object", "nullable": True}}
    assert evaluate(expression, parameters) == {}
    ids = {"userAssignedResourceIds": ["/x/id1", "/x/id2"]}
    result = plan(template(parameters=parameters, outputs={"o": {"type": "object", "value": expression}}),
                  {"managedIdentities": {"value": ids}}, context())
    assert result.outputs(FakeRuntime())["o"]["value"] == {"/x/id1": {}, "/x/id2": {}}


# --- deployment and resource functions -------------------------------------------------------------------------


def test_scope_functions() -> None:
    assert evaluate("[resourceGroup()]") == {
        "id": RG_ID, "name": "rg1", "type": "Microsoft.Resources/resourceGroups", "location": "westus",
        "tags": {"env": "test"}, "properties": {"provisioningState": "Succeeded"}}
    assert evaluate("[subscription()]") == {"id": f"/subscriptions/{SUB}", "subscriptionId": SUB,
                                            "tenantId": "tenant-1", "displayName": ""}
    assert evaluate("[deployment().name]") == "azuredeploy"
    assert evaluate("[deployment().properties.template.contentVersion]") == "1.0.0.0"
    assert evaluate("[environment().suffixes.acrLoginServer]") == ".azurecr.io"
    custom = {"name": "Local", "suffixes": {"acrLoginServer": ".azurecr.local"}}
    assert evaluate("[environment().suffixes.acrLoginServer]", environment=custom) == ".azurecr.local"
    assert evaluate("[tenant().tenantId]") == "tenant-1"


def test_resource_id_functions() -> None:
    assert evaluate(f"[resourceId('{ACR}', 'r1')]") == f"{RG_ID}/providers/{ACR}/r1"
    assert evaluate(f"[resourceId('{ACR}/webhooks', 'r1', 'h1')]") == f"{RG_ID}/providers/{ACR}/r1/webhooks/h1"
    assert evaluate(f"[resourceId('other', '{ACR}', 'r1')]") == \
        f"/subscriptions/{SUB}/resourceGroups/other/providers/{ACR}/r1"
    assert evaluate(f"[resourceId('s2', 'other', '{ACR}', 'r1')]") == \
        f"/subscriptions/s2/resourceGroups/other/providers/{ACR}/r1"
    assert evaluate(f"[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '{ACR_PULL}')]") == \
        f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{ACR_PULL}"
    assert evaluate("[subscriptionResourceId('s2', 'Microsoft.Authorization/roleDefinitions', 'x')]") == \
        "/subscriptions/s2/providers/Microsoft.Authorization/roleDefinitions/x"
    assert evaluate("[tenantResourceId('Microsoft.Authorization/policyDefinitions', 'p')]") == \
        "/providers/Microsoft.Authorization/policyDefinitions/p"
    assert evaluate(f"[extensionResourceId(resourceId('{ACR}', 'r1'), 'Microsoft.Authorization/locks', 'l')]") == \
        f"{RG_ID}/providers/{ACR}/r1/providers/Microsoft.Authorization/locks/l"
    error = error_of(template(variables={"v": f"[resourceId('{ACR}/webhooks', 'r1')]"}))
    assert "requires '2' resource name argument(s)" in error.message


def test_subscription_scope_resource_id_and_resource_group_function() -> None:
    sub = context(resource_group=None, location="westus")
    result = plan(template(outputs={"o": {"type": "string", "value": f"[resourceId('{ACR}', 'r')]"}}), {}, sub)
    assert result.outputs(FakeRuntime())["o"]["value"] == f"/subscriptions/{SUB}/providers/{ACR}/r"
    error = error_of(template(variables={"v": "[resourceGroup().name]"}), resource_group=None)
    assert "subscription scope" in error.message


def test_copy_index_outside_a_loop_is_refused() -> None:
    error = error_of(template(variables={"v": "[copyIndex()]"}))
    assert "The template function 'copyIndex' is not expected at this location." in error.message


# --- user-defined functions ------------------------------------------------------------------------------------


def test_user_defined_functions() -> None:
    functions = [{"namespace": "contoso", "members": {
        "uniqueName": {"parameters": [{"name": "prefix", "type": "string"}],
                       "output": {"type": "string", "value": "[concat(toLower(parameters('prefix')), 'x')]"}},
        "twice": {"parameters": [{"name": "n", "type": "int"}],
                  "output": {"type": "int", "value": "[mul(parameters('n'), 2)]"}},
        "loop": {"parameters": [{"name": "n", "type": "int"}],
                 "output": {"type": "int", "value": "[contoso.loop(parameters('n'))]"}},
        "usesVariables": {"parameters": [], "output": {"type": "string", "value": "[variables('v')]"}},
    }}]
    result = plan(template(functions=functions, outputs={
        "a": {"type": "string", "value": "[contoso.uniqueName('ACR')]"},
        "b": {"type": "int", "value": "[CONTOSO.TWICE(contoso.twice(2))]"},
    }), {}, context())
    outputs = result.outputs(FakeRuntime())
    assert (outputs["a"]["value"], outputs["b"]["value"]) == ("acrx", 8)
    error = error_of(template(functions=functions, variables={"v": "[contoso.loop(1)]"}))
    assert "exceeds the maximum function call depth of '16'" in error.message
    error = error_of(template(functions=functions, variables={"v": "[contoso.twice('a')]"}))
    assert "expects its parameter 'n' to be of type 'Integer'" in error.message
    error = error_of(template(functions=functions, variables={"v": "[contoso.usesVariables()]"}))
    assert "The template function 'variables' is not expected at this location" in error.message
    error = error_of(template(functions=functions, variables={"v": "[contoso.nope()]"}))
    assert "The template function 'contoso.nope' is not valid" in error.message


# --- parameters ------------------------------------------------------------------------------------------------


def test_parameter_types_defaults_and_echo() -> None:
    result = plan(template(parameters={
        "s": {"type": "string", "defaultValue": "d"},
        "i": {"type": "Int", "defaultValue": 3},
        "b": {"type": "bool"},
        "o": {"type": "object", "defaultValue": {"a": "[parameters('s')]"}},
        "a": {"type": "array", "defaultValue": []},
        "secret": {"type": "securestring"},
        "so": {"type": "secureObject", "defaultValue": {}},
        "n": {"type": "string", "nullable": True},
    }), {"B": {"value": True}, "secret": {"value": "hunter2-secret"}}, context())
    assert result.parameters == {
        "s": {"type": "String", "value": "d"}, "i": {"type": "Int", "value": 3}, "b": {"type": "Bool", "value": True},
        "o": {"type": "Object", "value": {"a": "d"}}, "a": {"type": "Array", "value": []},
        "secret": {"type": "SecureString"}, "so": {"type": "SecureObject"}, "n": {"type": "String", "value": None}}


@pytest.mark.parametrize(("definition", "value", "fragment"), [
    ({"type": "string"}, 5, "Template parameter JToken type is not valid. Expected 'String, Uri'. Actual 'Integer'"),
    ({"type": "int"}, "5", "Expected 'Integer'. Actual 'String'"),
    ({"type": "bool"}, 1, "Expected 'Boolean'. Actual 'Integer'"),
    ({"type": "array"}, {}, "Expected 'Array'. Actual 'Object'"),
    ({"type": "string", "allowedValues": ["Basic", "Premium"]}, "Gold",
     "The provided value 'Gold' for the template parameter 'p' at line '1' and column '154' is not valid. The "
     "parameter value is not part of the allowed value(s): 'Basic,Premium'."),
    ({"type": "array", "allowedValues": ["a", "b"]}, ["a", "c"], "not part of the allowed value(s): 'a,b'"),
    ({"type": "int", "minValue": 1}, 0, "The value must be greater than or equal to '1'"),
    ({"type": "int", "maxValue": 9}, 10, "The value must be less than or equal to '9'"),
    ({"type": "string", "minLength": 5}, "abc", "Length of the value should be greater than or equal to '5'"),
    ({"type": "array", "maxLength": 1}, [1, 2], "Length of the value should be less than or equal to '1'"),
    ({"type": "strang"}, "x", "has the type 'strang', which is not one of"),
])
def test_parameter_validation_errors(definition: dict[str, Any], value: Any, fragment: str) -> None:
    text = json.dumps(template(parameters={"p": definition}), separators=(",", ":"))
    error = error_of(text, {"p": {"value": value}})
    assert error.code == "InvalidTemplate"
    assert error.message.startswith("Deployment template validation failed: '")
    assert fragment in error.message


def test_allowed_values_ignore_case() -> None:
    result = plan(template(parameters={"sku": {"type": "string", "allowedValues": ["Premium"]}}),
                  {"sku": {"value": "premium"}}, context())
    assert result.parameters["sku"]["value"] == "premium"


def test_missing_and_unknown_parameters() -> None:
    text = json.dumps(template(parameters={"acrName": {"type": "string"}}), indent=2)
    error = error_of(text)
    assert error.message == ("Deployment template validation failed: 'The value for the template parameter 'acrName' "
                             "at line '6' and column '16' is not provided. Please see "
                             "https://aka.ms/arm-create-parameter-file for usage details.'.")
    error = error_of(template(parameters={"a": {"type": "string", "defaultValue": "x"}}), {"b": {"value": 1}})
    assert ("The template parameters 'b' in the parameters file are not valid; they are not present in the original "
            "template and can therefore not be provided at deployment time. The only supported parameters for this "
            "template are 'a'.") in error.message
    error = error_of(template(parameters={"a": {"type": "string"}}), {"a": "bare"})
    assert error.code == "InvalidRequestContent"
    error = error_of(template(variables={"v": "[parameters('nope')]"}))
    assert "The template parameter 'nope' is not found." in error.message


def test_secure_values_stay_out_of_errors_and_outputs() -> None:
    tpl = template(parameters={"pw": {"type": "securestring", "allowedValues": ["other"]}})
    error = error_of(tpl, {"pw": {"value": "s3cret-value"}})
    assert "s3cret-value" not in error.message and "The provided value for the template parameter 'pw'" in error.message
    tpl = template(parameters={"pw": {"type": "securestring"}},
                   variables={"v": "[dateTimeToEpoch(parameters('pw'))]"})
    error = error_of(tpl, {"pw": {"value": "s3cret-value"}})
    assert "s3cret-value" not in error.message and "***" in error.message
    result = plan(template(parameters={"pw": {"type": "securestring"}},
                           outputs={"o": {"type": "securestring", "value": "[parameters('pw')]"}}),
                  {"pw": {"value": "s3cret-value"}}, context())
    assert result.outputs(FakeRuntime()) == {"o": {"type": "SecureString"}}
    assert "s3cret-value" not in json.dumps(result.parameters)


def test_parameter_defaults_in_dependency_order_and_cycles() -> None:
    result = plan(template(parameters={
        "c": {"type": "string", "defaultValue": "[concat(parameters('b'), 'c')]"},
        "b": {"type": "string", "defaultValue": "[concat(parameters('a'), 'b')]"},
        "a": {"type": "string", "defaultValue": "a"},
    }), {}, context())
    assert result.parameters["c"]["value"] == "abc"
    error = error_of(template(parameters={
        "x": {"type": "string", "defaultValue": "[parameters('y')]"},
        "y": {"type": "string", "defaultValue": "[parameters('x')]"},
    }))
    assert "circular reference detected" in error.message


def test_parameter_types_from_definitions() -> None:
    tpl = template(languageVersion="2.0", definitions={
        "lockType": {"type": "object", "properties": {"kind": {"type": "string"}}},
        "skuType": {"type": "string", "allowedValues": ["Basic", "Premium"]},
    }, parameters={
        "lock": {"$ref": "#/definitions/lockType", "nullable": True},
        "sku": {"$ref": "#/definitions/skuType", "defaultValue": "Basic"},
    }, resources={})
    result = plan(tpl, {}, context())
    assert result.parameters["lock"] == {"type": "Object", "value": None}
    assert "not part of the allowed value(s): 'Basic,Premium'" in error_of(tpl, {"sku": {"value": "Gold"}}).message
    tpl["parameters"]["bad"] = {"$ref": "#/definitions/missing", "nullable": True}
    assert "refers to the type '#/definitions/missing'" in error_of(tpl).message


def test_key_vault_parameter_reference_goes_through_the_context() -> None:
    tpl = template(parameters={"pw": {"type": "securestring"}},
                   outputs={"len": {"type": "int", "value": "[length(parameters('pw'))]"}})
    reference = {"reference": {"keyVault": {"id": "/kv"}, "secretName": "s"}}
    error = error_of(tpl, {"pw": reference})
    assert error.code == "KeyVaultParameterReferenceSecretRetrieveFailed"
    result = plan(tpl, {"pw": reference}, context(resolve_key_vault_reference=lambda ref: "secret!"))
    assert result.outputs(FakeRuntime())["len"]["value"] == 7


# --- variables -------------------------------------------------------------------------------------------------


def test_variables_with_copy_and_references() -> None:
    result = plan(template(
        parameters={"count": {"type": "int", "defaultValue": 3}},
        variables={
            "copy": [{"name": "disks", "count": "[parameters('count')]",
                      "input": {"name": "[concat('disk', copyIndex('disks', 1))]", "size": 10}}],
            "nested": {"copy": [{"name": "items", "count": 2, "input": "[copyIndex('items')]"}], "other": "x"},
            "first": "[variables('disks')[0].name]",
            "Total": "[length(variables('disks'))]",
        },
        outputs={"o": {"type": "object", "value": "[createObject('first', variables('first'), 'total', "
                                                  "variables('total'), 'nested', variables('nested'))]"}}),
        {}, context())
    assert result.outputs(FakeRuntime())["o"]["value"] == {"first": "disk1", "total": 3,
                                                           "nested": {"items": [0, 1], "other": "x"}}


def test_variable_errors() -> None:
    assert "circular reference detected" in error_of(template(variables={
        "a": "[variables('b')]", "b": "[variables('a')]"})).message
    assert "The template variable 'nope' is not found." in error_of(template(variables={
        "a": "[variables('nope')]"})).message
    assert "The template function 'variables' is not expected at this location" in error_of(template(
        parameters={"p": {"type": "string", "defaultValue": "[variables('a')]"}}, variables={"a": "x"})).message
    assert "The template function 'reference' is not expected at this location" in error_of(template(
        variables={"a": f"[reference(resourceId('{ACR}', 'r')).loginServer]"})).message
    error = error_of(template(variables={"copy": [{"name": "big", "count": 801, "input": 1}]}))
    assert "must be a non-negative integer value and cannot exceed '800'" in error.message


def test_section_count_limits() -> None:
    error = error_of(template(parameters={f"p{i}": {"type": "int", "defaultValue": i} for i in range(257)}))
    assert "The number of template parameters '257' exceeds the limit of '256'." in error.message
    assert "exceeds the limit of '256'" in error_of(template(variables={f"v{i}": i for i in range(257)})).message
    error = error_of(template(outputs={f"o{i}": {"type": "int", "value": i} for i in range(65)}))
    assert "The number of template outputs '65' exceeds the limit of '64'." in error.message


# --- resources, copy, conditions, dependencies ------------------------------------------------------------------


def registry(name: str, **extra: Any) -> dict[str, Any]:
    resource = {"type": ACR, "apiVersion": "2023-07-01", "name": name, "location": "[resourceGroup().location]",
                "sku": {"name": "Basic"}, "properties": {"adminUserEnabled": False}}
    resource.update(extra)
    return resource


def ids(result: Plan) -> list[str]:
    return [r.id.rsplit("/providers/", 1)[-1] for r in result.resources]


def test_resource_plan_shape() -> None:
    result = plan(template(resources=[registry("acr1", tags={"a": "b", "gone": "[null()]"},
                                               properties={"adminUserEnabled": True, "policies": "[null()]"})]),
                  {}, context())
    (resource,) = result.resources
    assert resource.id == f"{RG_ID}/providers/{ACR}/acr1"
    assert (resource.type, resource.name, resource.api_version, resource.location) == (ACR, "acr1", "2023-07-01",
                                                                                       "westus")
    assert resource.body == {"location": "westus", "sku": {"name": "Basic"}, "tags": {"a": "b"},
                             "properties": {"adminUserEnabled": True}}
    assert (resource.scope, resource.subscription_id, resource.resource_group) == (RG_ID, SUB, "rg1")
    assert not resource.deferred and resource.depends_on == []
    assert result.providers() == [{"namespace": "Microsoft.ContainerRegistry",
                                   "resourceTypes": [{"resourceType": "registries", "locations": ["westus"]}]}]


def test_copy_loop_with_serial_batches() -> None:
    result = plan(template(resources=[registry("[concat('acr', copyIndex(1))]", copy={
        "name": "regs", "count": 5, "mode": "serial", "batchSize": 2})]), {}, context())
    names = [r.name for r in result.resources]
    assert names == ["acr1", "acr2", "acr3", "acr4", "acr5"]
    deps = {r.name: [d.rsplit("/", 1)[-1] for d in r.depends_on] for r in result.resources}
    assert deps == {"acr1": [], "acr2": [], "acr3": ["acr1", "acr2"], "acr4": ["acr1", "acr2"],
                    "acr5": ["acr3", "acr4"]}
    assert [[r.name for r in wave] for wave in result.waves()] == [["acr1", "acr2"], ["acr3", "acr4"], ["acr5"]]
    assert [r.copy_index for r in result.resources] == [0, 1, 2, 3, 4]


def test_copy_count_limits_and_resource_limit() -> None:
    error = error_of(template(resources=[registry("[concat('a', copyIndex())]", copy={"name": "c", "count": 801})]))
    assert error.code == "InvalidTemplate"
    assert "The copy count of 'c' must be a non-negative integer value and cannot exceed '800'" in error.message
    error = error_of(template(resources=[registry("[concat('a', copyIndex())]", copy={"name": "c", "count": 500}),
                                         registry("[concat('b', copyIndex())]", copy={"name": "d", "count": 301})]))
    assert "The number of template resources limit exceeded. Limit: '800' and actual: '801'." in error.message
    empty = plan(template(resources=[registry("[concat('a', copyIndex())]", copy={"name": "c", "count": 0})]),
                 {}, context())
    assert empty.resources == []


def test_property_copy() -> None:
    result = plan(template(resources=[registry("acr1", properties={
        "copy": [{"name": "rules", "count": 2, "input": {"value": "[concat('10.0.0.', copyIndex('rules'))]",
                                                         "action": "Allow"}}],
        "other": 1})]), {}, context())
    assert result.resources[0].body["properties"] == {
        "rules": [{"value": "10.0.0.0", "action": "Allow"}, {"value": "10.0.0.1", "action": "Allow"}], "other": 1}


def test_condition_false_skips_resource_and_its_dependents_edge() -> None:
    result = plan(template(parameters={"on": {"type": "bool", "defaultValue": False}}, resources=[
        registry("acr1"),
        {"condition": "[parameters('on')]", "type": "Microsoft.Insights/diagnosticSettings",
         "apiVersion": "2021-05-01-preview", "scope": f"{ACR}/acr1", "name": "diag",
         "properties": {"workspaceId": "[reference('nothing-evaluated').id]"}, "dependsOn": ["acr1"]},
        registry("acr2", dependsOn=[
            f"[extensionResourceId(resourceId('{ACR}', 'acr1'), 'Microsoft.Insights/diagnosticSettings', 'diag')]"]),
    ]), {}, context())
    assert [r.name for r in result.resources] == ["acr1", "acr2"]
    assert result.resources[1].depends_on == []


def test_depends_on_forms() -> None:
    result = plan(template(resources=[
        registry("a"),
        registry("b", dependsOn=["a"]),
        registry("c", dependsOn=[f"{ACR}/b"]),
        registry("d", dependsOn=[f"[resourceId('{ACR}', 'c')]"]),
        registry("[concat('e', copyIndex())]", copy={"name": "eloop", "count": 2}),
        registry("f", dependsOn=["eloop"]),
    ]), {}, context())
    deps = {r.name: sorted(d.rsplit("/", 1)[-1] for d in r.depends_on) for r in result.resources}
    assert deps == {"a": [], "b": ["a"], "c": ["b"], "d": ["c"], "e0": [], "e1": [], "f": ["e0", "e1"]}
    order = [r.name for r in result.resources]
    assert order.index("a") < order.index("b") < order.index("c") < order.index("d")
    error = error_of(template(resources=[registry("a", dependsOn=["ghost"])]))
    assert error.message == ("Deployment template validation failed: 'The resource 'ghost' is not defined in the "
                             "template. Please see https://aka.ms/arm-template/#resources for usage details.'.")


def test_circular_dependency_is_refused() -> None:
    error = error_of(template(resources=[registry("a", dependsOn=["c"]), registry("b", dependsOn=["a"]),
                                         registry("c", dependsOn=["b"])]))
    assert error.code == "InvalidTemplate"
    assert error.message.startswith("Deployment template validation failed: 'Circular dependency detected on "
                                    f"resource: '{RG_ID}/providers/{ACR}/a' and ")
    assert "Please see https://aka.ms/arm-template/#resources for usage details.'." in error.message
    assert "Circular dependency" in error_of(template(resources=[registry("a", dependsOn=["a"])])).message


def test_duplicate_resources_and_segment_lengths() -> None:
    error = error_of(template(resources=[registry("a"), registry("a")]))
    assert "is defined multiple times in a template" in error.message
    text = json.dumps(template(resources=[{"type": f"{ACR}/webhooks", "apiVersion": "2023-07-01",
                                           "name": "onlyone"}]), indent=2)
    error = error_of(text)
    assert error.message == (
        "Deployment template validation failed: 'The template resource 'onlyone' for type "
        f"'{ACR}/webhooks' at line '5' and column '5' has incorrect segment lengths. A nested resource type must have "
        "identical number of segments as its resource name. A root resource type must have segment length one "
        "greater than its resource name. Please see https://aka.ms/arm-syntax-resources for usage details.'.")
    error = error_of(template(resources=[{"type": ACR, "name": "x"}]))
    assert "Required property 'apiVersion' not found" in error.message


def test_child_resources_in_both_forms() -> None:
    result = plan(template(resources=[
        registry("acr1", resources=[{"type": "webhooks", "apiVersion": "2023-07-01", "name": "hook1",
                                     "location": "westus", "properties": {"serviceUri": "https://x"},
                                     "dependsOn": ["acr1"]}]),
        {"type": f"{ACR}/replications", "apiVersion": "2023-07-01", "name": "acr1/eastus", "location": "eastus",
         "properties": {}},
    ]), {}, context())
    by_name = {r.name: r for r in result.resources}
    assert set(by_name) == {"acr1", "acr1/hook1", "acr1/eastus"}
    assert by_name["acr1/hook1"].id == f"{RG_ID}/providers/{ACR}/acr1/webhooks/hook1"
    assert by_name["acr1/hook1"].type == f"{ACR}/webhooks"
    assert by_name["acr1/eastus"].depends_on == [by_name["acr1"].id]  # parent in the template: implicit
    assert result.resources[0].name == "acr1"


def test_extension_resources_with_scope() -> None:
    result = plan(template(resources=[
        registry("acr1"),
        {"type": "Microsoft.Authorization/locks", "apiVersion": "2020-05-01", "name": "lock1",
         "scope": f"{ACR}/acr1", "properties": {"level": "CanNotDelete"}},
        {"type": "Microsoft.Authorization/locks", "apiVersion": "2020-05-01", "name": "rglock",
         "properties": {"level": "ReadOnly"}},
        {"type": "Microsoft.Authorization/roleAssignments", "apiVersion": "2022-04-01",
         "name": f"[guid(resourceId('{ACR}', 'acr1'), 'principal', 'AcrPull')]",
         "scope": f"[resourceId('{ACR}', 'acr1')]", "properties": {"principalId": "principal"}},
    ]), {}, context())
    by_name = {r.name: r for r in result.resources}
    acr_id = f"{RG_ID}/providers/{ACR}/acr1"
    assert by_name["lock1"].id == f"{acr_id}/providers/Microsoft.Authorization/locks/lock1"
    assert by_name["lock1"].scope == acr_id and by_name["lock1"].depends_on == [acr_id]
    assert by_name["rglock"].id == f"{RG_ID}/providers/Microsoft.Authorization/locks/rglock"
    role = guid(acr_id, "principal", "AcrPull")
    assert by_name[role].id == f"{acr_id}/providers/Microsoft.Authorization/roleAssignments/{role}"


def test_reference_and_list_are_deferred_with_implicit_dependencies() -> None:
    result = plan(template(resources=[
        registry("acr1", properties={"adminUserEnabled": True}),
        {"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "app", "location": "westus",
         "properties": {"registry": f"[reference(resourceId('{ACR}', 'acr1')).loginServer]",
                        "user": f"[listCredentials(resourceId('{ACR}', 'acr1'), '2023-07-01').username]",
                        "static": "[concat('a', 'b')]"}},
    ], outputs={
        "login": {"type": "string", "value": "[reference('acr1').loginServer]"},
        "password": {"type": "string", "value": f"[listCredentials(resourceId('{ACR}', 'acr1'), "
                                                "'2023-07-01').passwords[0].value]"},
        "full": {"type": "string", "value": "[reference('acr1', '2023-07-01', 'Full').identity.principalId]"},
    }), {}, context())
    acr, app = result.resources
    assert app.depends_on == [acr.id] and app.deferred and not acr.deferred
    assert isinstance(app.body["properties"]["registry"], Deferred)
    assert app.preview()["properties"]["registry"] == f"[reference(resourceId('{ACR}', 'acr1')).loginServer]"
    assert app.body["properties"]["static"] == "ab"
    runtime = FakeRuntime()
    assert app.resolve(runtime)["properties"] == {"registry": "acr1.azurecr.io", "user": "acr1", "static": "ab"}
    assert runtime.calls == [("reference", acr.id, "2023-07-01", "False"),
                             ("list", acr.id, "listCredentials", "2023-07-01")]
    outputs = result.outputs(FakeRuntime())
    assert outputs == {"login": {"type": "String", "value": "acr1.azurecr.io"},
                       "password": {"type": "String", "value": "pw1"},
                       "full": {"type": "String", "value": "p-1"}}
    with pytest.raises(TemplateError) as caught:
        plan(template(outputs={"o": {"type": "string", "value": "[reference('nothing').x]"}}), {},
             context()).outputs(FakeRuntime())
    assert "The template reference 'nothing' is not valid: could not find template resource" in caught.value.message


def test_reference_in_name_is_refused() -> None:
    error = error_of(template(resources=[registry("a"), registry("[reference('a').loginServer]")]))
    assert "its value is only known at deployment time" in error.message


def test_outputs_copy_condition_and_types() -> None:
    result = plan(template(outputs={
        "names": {"type": "array", "copy": {"count": 3, "input": "[concat('n', copyIndex())]"}},
        "skipped": {"type": "string", "condition": "[equals(1, 2)]", "value": "x"},
        "count": {"type": "int", "value": 3},
        "flag": {"type": "bool", "value": "[true()]"},
    }), {}, context())
    assert result.outputs(FakeRuntime()) == {"names": {"type": "Array", "value": ["n0", "n1", "n2"]},
                                             "count": {"type": "Int", "value": 3},
                                             "flag": {"type": "Bool", "value": True}}
    with pytest.raises(TemplateError) as caught:
        plan(template(outputs={"o": {"type": "int", "value": "x"}}), {}, context()).outputs(FakeRuntime())
    assert "Template output JToken type is not valid. Expected 'Integer'. Actual 'String'." in caught.value.message


# --- languageVersion 2.0 -----------------------------------------------------------------------------------------


def test_symbolic_names_existing_and_copy_references() -> None:
    tpl = template(languageVersion="2.0", parameters={"names": {"type": "array", "defaultValue": ["x", "y"]}},
                   resources={
                       "vault": {"existing": True, "type": "Microsoft.KeyVault/vaults", "apiVersion": "2024-11-01",
                                 "subscriptionId": "s9", "resourceGroup": "kv-rg", "name": "kv1"},
                       "ghost": {"existing": True, "condition": False, "type": "Microsoft.KeyVault/vaults",
                                 "apiVersion": "2024-11-01", "name": "[last(split(null(), '/'))]"},
                       "registry": registry("acr1", dependsOn=["vault", "ghost"]),
                       "hooks": {"copy": {"name": "hooks", "count": "[length(parameters('names'))]"},
                                 "type": f"{ACR}/webhooks", "apiVersion": "2023-07-01",
                                 "name": "[format('acr1/{0}', parameters('names')[copyIndex()])]",
                                 "properties": {"uri": "[reference('vault').vaultUri]"}, "dependsOn": ["registry"]},
                       "lock": {"type": "Microsoft.Authorization/locks", "apiVersion": "2020-05-01", "name": "l",
                                "scope": f"[resourceId('{ACR}', 'acr1')]", "properties": {"level": "ReadOnly"},
                                "dependsOn": ["hooks"]},
                   }, outputs={
                       "second": {"type": "string", "value": "[reference('hooks[1]').loginServer]"},
                       "info": {"type": "object", "value": "[resourceInfo('registry')]"},
                   })
    result = plan(tpl, {}, context())
    assert [r.symbolic_name for r in result.resources] == ["registry", "hooks", "hooks", "lock"]
    assert result.resources[0].depends_on == []
    assert [e.id for e in result.existing] == [
        "/subscriptions/s9/resourceGroups/kv-rg/providers/Microsoft.KeyVault/vaults/kv1"]
    lock = result.resources[3]
    assert [d.rsplit("/", 1)[-1] for d in lock.depends_on] == ["acr1", "x", "y"]
    runtime = FakeRuntime()
    assert result.resources[1].resolve(runtime)["properties"]["uri"] == "https://kv1.vault.azure.net/"
    assert runtime.calls[0][1] == result.existing[0].id
    outputs = result.outputs(FakeRuntime())
    assert outputs["second"]["value"] == "y.azurecr.io"
    assert outputs["info"]["value"]["id"] == f"{RG_ID}/providers/{ACR}/acr1"


# --- nested deployments ---------------------------------------------------------------------------------------


def nested(name: str, inner_template: dict[str, Any], scope: str | None = None, **extra: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {"mode": "Incremental", "template": inner_template}
    if scope:
        properties["expressionEvaluationOptions"] = {"scope": scope}
    properties.update(extra.pop("properties", {}))
    resource = {"type": "Microsoft.Resources/deployments", "apiVersion": "2025-04-01", "name": name,
                "properties": properties}
    resource.update(extra)
    return resource


def test_nested_deployment_inner_scope() -> None:
    inner = template(parameters={"registryName": {"type": "string"},
                                 "location": {"type": "string", "defaultValue": "[resourceGroup().location]"}},
                     variables={"v": "inner"},
                     resources=[{"type": f"{ACR}/replications", "apiVersion": "2023-07-01",
                                 "name": "[format('{0}/{1}', parameters('registryName'), 'eastus')]",
                                 "location": "eastus", "properties": {"note": "[variables('v')]"}}],
                     outputs={"id": {"type": "string", "value": f"[resourceId('{ACR}/replications', "
                                                                "parameters('registryName'), 'eastus')]"}})
    result = plan(template(variables={"v": "outer"}, resources=[
        registry("acr1"),
        nested("child", inner, "inner", properties={"parameters": {"registryName": {"value": "acr1"}}},
               dependsOn=["acr1"]),
    ]), {}, context())
    deployment = result.resources[1]
    assert deployment.id == f"{RG_ID}/providers/Microsoft.Resources/deployments/child"
    assert deployment.is_deployment and deployment.nested is not None
    assert deployment.body["properties"]["template"] == inner  # passed through unevaluated
    (replica,) = deployment.nested.resources
    assert replica.name == "acr1/eastus" and replica.body["properties"] == {"note": "inner"}
    assert deployment.nested.parameters["location"] == {"type": "String", "value": "westus"}
    assert deployment.nested.outputs(FakeRuntime())["id"]["value"] == \
        f"{RG_ID}/providers/{ACR}/acr1/replications/eastus"


def test_nested_deployment_outer_scope_uses_parent_values() -> None:
    inner = template(resources=[registry("[parameters('name')]", properties={"note": "[variables('v')]"})])
    result = plan(template(parameters={"name": {"type": "string", "defaultValue": "outeracr"}},
                           variables={"v": "outer"},
                           resources=[nested("child", inner)]), {}, context())
    (child,) = result.resources[0].nested.resources
    assert child.name == "outeracr" and child.body["properties"] == {"note": "outer"}


def test_nested_deployment_with_deferred_parameters_is_planned_when_reached() -> None:
    inner = template(parameters={"server": {"type": "string"}},
                     resources=[registry("acr2", tags={"server": "[parameters('server')]"})])
    result = plan(template(resources=[
        registry("acr1"),
        nested("child", inner, "inner",
               properties={"parameters": {"server": {"value": "[reference('acr1').loginServer]"}}}),
    ]), {}, context())
    deployment = result.resources[1]
    assert deployment.nested is None and deployment.deferred and deployment.depends_on == [result.resources[0].id]
    nested_plan = deployment.plan_nested(FakeRuntime())
    assert nested_plan.resources[0].body["tags"] == {"server": "acr1.azurecr.io"}


def test_subscription_scope_creates_group_and_deploys_into_it() -> None:
    inner = template(resources=[registry("acr1", location="eastus")])
    tpl = template(resources=[
        {"type": "Microsoft.Resources/resourceGroups", "apiVersion": "2022-09-01", "name": "newrg",
         "location": "eastus"},
        nested("intoGroup", inner, "inner", resourceGroup="newrg",
               dependsOn=["[subscriptionResourceId('Microsoft.Resources/resourceGroups', 'newrg')]"]),
    ])
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    ctx = context(resource_group=None, location="eastus",
                  lookup_resource_group=lambda sub, name: groups.get((sub, name)))
    result = plan(tpl, {}, ctx)
    group, deployment = result.resources
    assert group.id == f"/subscriptions/{SUB}/resourceGroups/newrg"
    assert deployment.id == f"/subscriptions/{SUB}/resourceGroups/newrg/providers/Microsoft.Resources/deployments/" \
                            "intoGroup"
    assert deployment.depends_on == [group.id] and deployment.nested is None
    with pytest.raises(TemplateError) as caught:
        deployment.plan_nested(FakeRuntime())
    assert caught.value.code == "ResourceGroupNotFound"
    groups[(SUB, "newrg")] = {"location": "eastus", "tags": {}}
    (acr,) = deployment.plan_nested(FakeRuntime()).resources
    assert acr.id == f"/subscriptions/{SUB}/resourceGroups/newrg/providers/{ACR}/acr1"


def test_nested_deployment_errors_propagate() -> None:
    inner = template(parameters={"needed": {"type": "string"}})
    error = error_of(template(resources=[nested("child", inner, "inner")]))
    assert "The value for the template parameter 'needed'" in error.message


# --- limits: recursion and time ---------------------------------------------------------------------------------


def test_time_budget_is_enforced() -> None:
    expression = "[length(map(range(0, 10000), lambda('i', map(range(0, 10000), lambda('j', 1)))))]"
    error = error_of(template(variables={"v": expression}), time_budget_seconds=0.2)
    assert error.code == "InvalidTemplate"
    assert "The template evaluation exceeded the time limit of '0.2' seconds." in error.message


def test_deep_recursion_is_refused_not_crashing() -> None:
    members = {f"f{i}": {"parameters": [], "output": {"type": "int", "value": f"[add(1, ns.f{i + 1}())]"}}
               for i in range(40)}
    members["f40"] = {"parameters": [], "output": {"type": "int", "value": "[int(1)]"}}
    error = error_of(template(functions=[{"namespace": "ns", "members": members}], variables={"v": "[ns.f0()]"}))
    assert "maximum function call depth of '16'" in error.message
    inner: dict[str, Any] = template()
    for _ in range(12):
        inner = template(resources=[nested("n", inner, "inner")])
    assert "exceeds the maximum nesting depth of '10'" in error_of(inner).message


# --- quick-start and AVM style templates ----------------------------------------------------------------------------

QUICKSTART_BASIC = """{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {
    // the registry's name must be globally unique
    "acrName": {"type": "string", "minLength": 5, "maxLength": 50,
                "defaultValue": "[format('acr{0}', uniqueString(resourceGroup().id))]"},
    "location": {"type": "string", "defaultValue": "[resourceGroup().location]"},
    "acrSku": {"type": "string", "defaultValue": "Basic", "allowedValues": ["Basic", "Standard", "Premium"]},
    "replicaLocation": {"type": "string", "defaultValue": ""},
    "pullPrincipalId": {"type": "string", "defaultValue": ""},
    "enableDiagnostics": {"type": "bool", "defaultValue": false},
    "workspaceId": {"type": "string", "defaultValue": ""},
    "enableDeleteLock": {"type": "bool", "defaultValue": false},
  },
  "variables": {
    "acrPullRole":
      "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '7f951dda-4ed3-4680-a7ca-43fe172d538d')]",
    "registryId": "[resourceId('Microsoft.ContainerRegistry/registries', parameters('acrName'))]",
  },
  "resources": [
    {
      "type": "Microsoft.ContainerRegistry/registries",
      "apiVersion": "2023-07-01",
      "name": "[parameters('acrName')]",
      "location": "[parameters('location')]",
      "sku": {"name": "[parameters('acrSku')]"},
      "identity": "[if(not(empty(parameters('pullPrincipalId'))), createObject('type', 'SystemAssigned'), null())]",
      "tags": {"displayName": "Container Registry", "container.registry": "[parameters('acrName')]"},
      "properties": {"adminUserEnabled": false,
                     "zoneRedundancy": "[if(equals(parameters('acrSku'), 'Premium'), 'Enabled', null())]"}
    },
    {
      "condition": "[not(empty(parameters('replicaLocation')))]",
      "type": "Microsoft.ContainerRegistry/registries/replications",
      "apiVersion": "2023-07-01",
      "name": "[format('{0}/{1}', parameters('acrName'), parameters('replicaLocation'))]",
      "location": "[parameters('replicaLocation')]",
      "properties": {},
      "dependsOn": ["[variables('registryId')]"]
    },
    {
      "condition": "[not(empty(parameters('pullPrincipalId')))]",
      "type": "Microsoft.Authorization/roleAssignments",
      "apiVersion": "2022-04-01",
      "scope": "[format('Microsoft.ContainerRegistry/registries/{0}', parameters('acrName'))]",
      "name": "[guid(variables('registryId'), parameters('pullPrincipalId'), variables('acrPullRole'))]",
      "properties": {"roleDefinitionId": "[variables('acrPullRole')]", "principalId": "[parameters('pullPrincipalId')]",
                     "principalType": "ServicePrincipal"},
      "dependsOn": ["[variables('registryId')]"]
    },
    {
      "condition": "[parameters('enableDiagnostics')]",
      "type": "Microsoft.Insights/diagnosticSettings",
      "apiVersion": "2021-05-01-preview",
      "scope": "[format('Microsoft.ContainerRegistry/registries/{0}', parameters('acrName'))]",
      "name": "[format('{0}-dgs', parameters('acrName'))]",
      "properties": {
        "workspaceId": "[if(empty(parameters('workspaceId')), null(), parameters('workspaceId'))]",
        "logs": [{"category": "ContainerRegistryRepositoryEvents", "enabled": true}],
        "metrics": [{"category": "AllMetrics", "enabled": true}]
      },
      "dependsOn": ["[variables('registryId')]"]
    },
    {
      "condition": "[parameters('enableDeleteLock')]",
      "type": "Microsoft.Authorization/locks",
      "apiVersion": "2020-05-01",
      "scope": "[format('Microsoft.ContainerRegistry/registries/{0}', parameters('acrName'))]",
      "name": "[format('{0}-lck', parameters('acrName'))]",
      "properties": {"level": "CanNotDelete"},
      "dependsOn": ["[variables('registryId')]"]
    },
  ],
  "outputs": {
    "acrLoginServer": {
      "type": "string",
      "value": "[reference(resourceId('Microsoft.ContainerRegistry/registries', parameters('acrName'))).loginServer]"
    },
    "registryId": {"type": "string", "value": "[variables('registryId')]"}
  }
}"""


def test_quickstart_registry_with_defaults() -> None:
    result = plan(QUICKSTART_BASIC, {}, context())
    name = "acr" + unique_string(RG_ID)
    (acr,) = result.resources
    assert acr.id == f"{RG_ID}/providers/{ACR}/{name}"
    assert acr.body == {"location": "westus", "sku": {"name": "Basic"},
                        "tags": {"displayName": "Container Registry", "container.registry": name},
                        "properties": {"adminUserEnabled": False}}
    assert result.outputs(FakeRuntime()) == {
        "acrLoginServer": {"type": "String", "value": f"{name}.azurecr.io"},
        "registryId": {"type": "String", "value": acr.id}}


def test_quickstart_registry_with_geo_replication_role_diagnostics_and_lock() -> None:
    parameters = {"acrName": {"value": "contosoacr"}, "acrSku": {"value": "Premium"},
                  "replicaLocation": {"value": "eastus"}, "pullPrincipalId": {"value": "principal-1"},
                  "enableDiagnostics": {"value": True}, "workspaceId": {"value": "/ws"},
                  "enableDeleteLock": {"value": True}}
    result = plan(QUICKSTART_BASIC, parameters, context())
    acr_id = f"{RG_ID}/providers/{ACR}/contosoacr"
    role_definition = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{ACR_PULL}"
    role_name = guid(acr_id, "principal-1", role_definition)
    assert [r.id for r in result.resources] == [
        acr_id,
        f"{acr_id}/replications/eastus",
        f"{acr_id}/providers/Microsoft.Authorization/roleAssignments/{role_name}",
        f"{acr_id}/providers/Microsoft.Insights/diagnosticSettings/contosoacr-dgs",
        f"{acr_id}/providers/Microsoft.Authorization/locks/contosoacr-lck",
    ]
    acr, replica, role, diagnostics, _ = result.resources
    assert acr.body["identity"] == {"type": "SystemAssigned"}
    assert acr.body["properties"]["zoneRedundancy"] == "Enabled"
    assert replica.location == "eastus" and replica.depends_on == [acr_id]
    assert role.body["properties"] == {"roleDefinitionId": role_definition, "principalId": "principal-1",
                                       "principalType": "ServicePrincipal"}
    assert role.scope == acr_id
    assert diagnostics.body["properties"]["workspaceId"] == "/ws"
    assert [len(w) for w in result.waves()] == [1, 4]
    assert result.dependencies()[0] == {
        "id": replica.id, "resourceType": f"{ACR}/replications", "resourceName": "contosoacr/eastus",
        "dependsOn": [{"id": acr_id, "resourceType": ACR, "resourceName": "contosoacr"}]}


def test_quickstart_rejects_bad_sku_and_short_name() -> None:
    error = error_of(QUICKSTART_BASIC, {"acrSku": {"value": "Gold"}})
    assert ("The provided value 'Gold' for the template parameter 'acrSku' at line '9' and column '15' is not valid. "
            "The parameter value is not part of the allowed value(s): 'Basic,Standard,Premium'.") in error.message
    error = error_of(QUICKSTART_BASIC, {"acrName": {"value": "ab"}})
    assert "Length of the value should be greater than or equal to '5'" in error.message


def avm_registry_module() -> dict[str, Any]:
    """A module in the style of AVM's registry main.json (languageVersion 2.0, Bicep idioms, nested modules)."""
    role_assignments = "coalesce(variables('formattedRoleAssignments'), createArray())"
    webhook_module = template(
        languageVersion="2.0",
        parameters={"registryName": {"type": "string"},
                    "name": {"type": "string", "defaultValue": "[format('{0}webhook', parameters('registryName'))]",
                             "minLength": 5, "maxLength": 50},
                    "serviceUri": {"type": "string"},
                    "action": {"type": "array", "defaultValue": ["push"]},
                    "location": {"type": "string", "defaultValue": "[resourceGroup().location]"},
                    "tags": {"type": "object", "nullable": True}},
        resources={
            "registry": {"existing": True, "type": ACR, "apiVersion": "2023-06-01-preview",
                         "name": "[parameters('registryName')]"},
            "webhook": {"type": f"{ACR}/webhooks", "apiVersion": "2025-11-01",
                        "name": "[format('{0}/{1}', parameters('registryName'), parameters('name'))]",
                        "location": "[parameters('location')]", "tags": "[parameters('tags')]",
                        "properties": {"actions": "[parameters('action')]", "serviceUri": "[parameters('serviceUri')]",
                                       "status": "enabled"}}},
        outputs={"resourceId": {"type": "string", "value": f"[resourceId('{ACR}/webhooks', "
                                                           "parameters('registryName'), parameters('name'))]"},
                 "location": {"type": "string",
                              "value": "[reference('webhook', '2025-11-01', 'full').location]"}})
    return template(
        languageVersion="2.0",
        definitions={
            "roleAssignmentType": {"type": "object", "properties": {"principalId": {"type": "string"}}},
            "lockType": {"type": "object", "properties": {"kind": {"type": "string", "nullable": True}}},
            "managedIdentityAllType": {"type": "object", "properties": {}},
            "webhookType": {"type": "object", "properties": {"serviceUri": {"type": "string"}}},
        },
        parameters={
            "name": {"type": "string", "minLength": 5, "maxLength": 50},
            "location": {"type": "string", "defaultValue": "[resourceGroup().location]"},
            "acrSku": {"type": "string", "defaultValue": "Premium", "allowedValues": ["Basic", "Premium", "Standard"]},
            "zoneRedundancy": {"type": "string", "defaultValue": "Enabled", "allowedValues": ["Disabled", "Enabled"]},
            "roleAssignments": {"type": "array", "items": {"$ref": "#/definitions/roleAssignmentType"},
                                "nullable": True},
            "lock": {"$ref": "#/definitions/lockType", "nullable": True},
            "managedIdentities": {"$ref": "#/definitions/managedIdentityAllType", "nullable": True},
            "webhooks": {"type": "array", "items": {"$ref": "#/definitions/webhookType"}, "nullable": True},
            "customerManagedKey": {"type": "object", "nullable": True},
            "tags": {"type": "object", "nullable": True},
            "enableTelemetry": {"type": "bool", "defaultValue": True},
        },
        variables={
            "copy": [{"name": "formattedRoleAssignments",
                      "count": "[length(coalesce(parameters('roleAssignments'), createArray()))]",
                      "input": "[union(coalesce(parameters('roleAssignments'), createArray())"
                               "[copyIndex('formattedRoleAssignments')], createObject('roleDefinitionId', "
                               "coalesce(tryGet(variables('builtInRoleNames'), coalesce(parameters('roleAssignments'), "
                               "createArray())[copyIndex('formattedRoleAssignments')].roleDefinitionIdOrName), "
                               "subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
                               "coalesce(parameters('roleAssignments'), createArray())"
                               "[copyIndex('formattedRoleAssignments')].roleDefinitionIdOrName))))]"}],
            "formattedUserAssignedIdentities": "[reduce(map(coalesce(tryGet(parameters('managedIdentities'), "
                                               "'userAssignedResourceIds'), createArray()), lambda('id', createObject("
                                               "format('{0}', lambdaVariables('id')), createObject()))), "
                                               "createObject(), lambda('cur', 'next', union(lambdaVariables('cur'), "
                                               "lambdaVariables('next'))))]",
            "identity": "[if(not(empty(parameters('managedIdentities'))), createObject('type', "
                        "if(coalesce(tryGet(parameters('managedIdentities'), 'systemAssigned'), false()), "
                        "'SystemAssigned', 'None')), null())]",
            "builtInRoleNames": {
                "AcrPull": f"[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '{ACR_PULL}')]"},
        },
        resources={
            "cMKKeyVault": {"condition": "[not(empty(tryGet(parameters('customerManagedKey'), 'keyVaultResourceId')))]",
                            "existing": True, "type": "Microsoft.KeyVault/vaults", "apiVersion": "2024-11-01",
                            "subscriptionId": "[split(tryGet(parameters('customerManagedKey'), 'keyVaultResourceId'), "
                                              "'/')[2]]",
                            "resourceGroup": "[split(tryGet(parameters('customerManagedKey'), 'keyVaultResourceId'), "
                                             "'/')[4]]",
                            "name": "[last(split(tryGet(parameters('customerManagedKey'), 'keyVaultResourceId'), "
                                    "'/'))]"},
            "avmTelemetry": {"condition": "[parameters('enableTelemetry')]", "type": "Microsoft.Resources/deployments",
                             "apiVersion": "2024-03-01",
                             "name": "[format('46d3xbcp.res.containerregistry-registry.{0}.{1}', "
                                     "replace('-..--..-', '.', '-'), substring(uniqueString(deployment().name, "
                                     "parameters('location')), 0, 4))]",
                             "properties": {"mode": "Incremental", "template": {
                                 "$schema": SCHEMA, "contentVersion": "1.0.0.0", "resources": [],
                                 "outputs": {"telemetry": {"type": "String", "value": "For more information"}}}}},
            "registry": {"type": ACR, "apiVersion": "2025-06-01-preview", "name": "[parameters('name')]",
                         "location": "[parameters('location')]", "identity": "[variables('identity')]",
                         "tags": "[parameters('tags')]", "sku": {"name": "[parameters('acrSku')]"},
                         "properties": {
                             "encryption": "[if(not(empty(parameters('customerManagedKey'))), createObject('status', "
                                           "'enabled', 'keyIdentifier', reference('cMKKeyVault').vaultUri), null())]",
                             "policies": {"exportPolicy": "[if(equals(parameters('acrSku'), 'Premium'), "
                                                          "createObject('status', 'disabled'), null())]"},
                             "zoneRedundancy": "[if(equals(parameters('acrSku'), 'Premium'), "
                                               "parameters('zoneRedundancy'), null())]"},
                         "dependsOn": ["cMKKeyVault"]},
            "registry_lock": {"condition": "[and(not(empty(coalesce(parameters('lock'), createObject()))), "
                                           "not(equals(tryGet(parameters('lock'), 'kind'), 'None')))]",
                              "type": "Microsoft.Authorization/locks", "apiVersion": "2020-05-01",
                              "scope": f"[resourceId('{ACR}', parameters('name'))]",
                              "name": "[coalesce(tryGet(parameters('lock'), 'name'), format('lock-{0}', "
                                      "parameters('name')))]",
                              "properties": {"level": "[coalesce(tryGet(parameters('lock'), 'kind'), '')]"},
                              "dependsOn": ["registry"]},
            "registry_roleAssignments": {
                "copy": {"name": "registry_roleAssignments", "count": f"[length({role_assignments})]"},
                "type": "Microsoft.Authorization/roleAssignments", "apiVersion": "2022-04-01",
                "scope": f"[resourceId('{ACR}', parameters('name'))]",
                "name": f"[coalesce(tryGet({role_assignments}[copyIndex()], 'name'), guid(resourceId('{ACR}', "
                        f"parameters('name')), {role_assignments}[copyIndex()].principalId, "
                        f"{role_assignments}[copyIndex()].roleDefinitionId))]",
                "properties": {"roleDefinitionId": f"[{role_assignments}[copyIndex()].roleDefinitionId]",
                               "principalId": f"[{role_assignments}[copyIndex()].principalId]",
                               "principalType": f"[tryGet({role_assignments}[copyIndex()], 'principalType')]"},
                "dependsOn": ["registry"]},
            "registry_webhooks": {
                "copy": {"name": "registry_webhooks",
                         "count": "[length(coalesce(parameters('webhooks'), createArray()))]"},
                "type": "Microsoft.Resources/deployments", "apiVersion": "2025-04-01",
                "name": "[format('{0}-Registry-Webhook-{1}', uniqueString(deployment().name, parameters('location')), "
                        "copyIndex())]",
                "properties": {
                    "expressionEvaluationOptions": {"scope": "inner"}, "mode": "Incremental",
                    "parameters": {
                        "registryName": {"value": "[parameters('name')]"},
                        "serviceUri": {"value": "[coalesce(parameters('webhooks'), createArray())[copyIndex()]"
                                                ".serviceUri]"},
                        "name": "[if(empty(tryGet(coalesce(parameters('webhooks'), createArray())[copyIndex()], "
                                "'name')), createObject('value', null()), createObject('value', coalesce("
                                "parameters('webhooks'), createArray())[copyIndex()].name))]",
                        "tags": {"value": "[coalesce(tryGet(coalesce(parameters('webhooks'), createArray())"
                                          "[copyIndex()], 'tags'), parameters('tags'))]"}},
                    "template": webhook_module},
                "dependsOn": ["registry"]},
        },
        outputs={
            "name": {"type": "string", "value": "[parameters('name')]"},
            "loginServer": {"type": "string", "value": "[reference('registry').loginServer]"},
            "resourceId": {"type": "string", "value": f"[resourceId('{ACR}', parameters('name'))]"},
            "systemAssignedMIPrincipalId": {"type": "string", "nullable": True,
                                            "value": "[tryGet(tryGet(reference('registry', '2025-06-01-preview', "
                                                     "'full'), 'identity'), 'principalId')]"},
            "webhookIds": {"type": "array", "copy": {
                "count": "[length(range(0, length(coalesce(parameters('webhooks'), createArray()))))]",
                "input": "[reference(format('registry_webhooks[{0}]', range(0, length(coalesce(parameters('webhooks'), "
                         "createArray())))[copyIndex()])).outputs.resourceId.value]"}},
        })


def test_avm_style_module_plans_with_default_parameters() -> None:
    result = plan(avm_registry_module(), {"name": {"value": "avmacr01"}}, context())
    telemetry, acr = result.resources
    assert telemetry.name == "46d3xbcp.res.containerregistry-registry.--------." + \
        unique_string("azuredeploy", "westus")[:4]
    assert telemetry.nested is not None and telemetry.nested.resources == []
    assert acr.body == {"location": "westus", "sku": {"name": "Premium"},
                        "properties": {"policies": {"exportPolicy": {"status": "disabled"}},
                                       "zoneRedundancy": "Enabled"}}
    assert acr.depends_on == [] and result.existing == []
    outputs = result.outputs(FakeRuntime())
    assert outputs["loginServer"]["value"] == "avmacr01.azurecr.io"
    assert outputs["systemAssignedMIPrincipalId"]["value"] == "p-1"
    assert outputs["webhookIds"] == {"type": "Array", "value": []}


def test_avm_style_module_with_role_assignments_webhooks_and_lock() -> None:
    parameters = {"name": {"value": "avmacr01"}, "acrSku": {"value": "Standard"},
                  "lock": {"value": {"kind": "CanNotDelete"}},
                  "managedIdentities": {"value": {"systemAssigned": True}},
                  "roleAssignments": {"value": [{"principalId": "p-9", "roleDefinitionIdOrName": "AcrPull",
                                                 "principalType": "ServicePrincipal"}]},
                  "webhooks": {"value": [{"serviceUri": "https://hook", "name": "hookone"},
                                         {"serviceUri": "https://hook2"}]}}
    result = plan(avm_registry_module(), parameters, context())
    by_symbol: dict[str, list[Any]] = {}
    for resource in result.resources:
        by_symbol.setdefault(resource.symbolic_name, []).append(resource)
    acr = by_symbol["registry"][0]
    assert acr.body["identity"] == {"type": "SystemAssigned"}
    assert "zoneRedundancy" not in acr.body["properties"]
    (lock,) = by_symbol["registry_lock"]
    assert lock.id == f"{acr.id}/providers/Microsoft.Authorization/locks/lock-avmacr01"
    (role,) = by_symbol["registry_roleAssignments"]
    role_definition = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{ACR_PULL}"
    assert role.name == guid(acr.id, "p-9", role_definition)
    assert role.body["properties"]["roleDefinitionId"] == role_definition
    first, second = by_symbol["registry_webhooks"]
    (hook,) = first.nested.resources
    assert hook.name == "avmacr01/hookone" and hook.api_version == "2025-11-01"
    assert second.nested.resources[0].name == "avmacr01/avmacr01webhook"
    assert first.nested.existing[0].id == acr.id
    assert all(acr.id in r.depends_on for r in (lock, role, first, second))
    outputs = result.outputs(FakeRuntime())
    assert outputs["webhookIds"]["value"] == [first.id, second.id]


def test_avm_style_module_refuses_bad_input() -> None:
    error = error_of(avm_registry_module(), {"name": {"value": "avmacr01"}, "acrSku": {"value": "Gold"}})
    assert "not part of the allowed value(s): 'Basic,Premium,Standard'" in error.message
    error = error_of(avm_registry_module())
    assert "The value for the template parameter 'name'" in error.message
    tpl = avm_registry_module()
    tpl["resources"]["registry_lock"]["dependsOn"] = ["registry_webhooks"]
    tpl["resources"]["registry"]["dependsOn"] = ["registry_lock"]
    error = error_of(tpl, {"name": {"value": "avmacr01"}, "lock": {"value": {"kind": "ReadOnly"}},
                           "webhooks": {"value": [{"serviceUri": "https://hook"}]}})
    assert "Circular dependency detected on resource" in error.message
    assert copy.deepcopy(tpl) == tpl  # planning never mutates the template
