"""Walking a config's nested dicts and lists."""


def walk_config(node, path=''):
    """(dotted path, dict) for every dict in a config tree, nested ones too."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk_config(value, f'{path}.{key}' if path else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from walk_config(value, f'{path}[{i}]')


def replace_types(node, names):
    """Set ``type`` of every dict in a config tree that is a key of ``names`` to its value, in
    place; returns how many were replaced."""
    found = [d for _, d in walk_config(node) if d.get('type') in names]
    for d in found:
        d['type'] = names[d['type']]
    return len(found)
