"""ini files as oslo.config reads them: edited in place, or written whole.

`IniDocument` edits a file's lines in memory (cloudlet-configure: comments,
order and everything else stay); `render` writes {section: {option: value}}
as a new file (the box's configuration). One parser for both.
"""

import dataclasses
import os
import tempfile


class IniError(Exception):
    """A file that cannot be read."""


@dataclasses.dataclass
class IniLine:
    kind: str               # blank, section, comment, assign, continuation, other
    section: str | None     # the section the line is in
    key: str | None = None  # assign: the option name
    value: str | None = None


def _split_assignment(line):
    """(key, value, index of the delimiter) the way oslo.config's iniparser splits."""
    colon, equal = line.find(':'), line.find('=')
    if colon < 0 and equal < 0:
        return None
    delimiter = equal if colon < 0 or 0 <= equal < colon else colon
    value = line[delimiter + 1:].strip()
    if value and value[0] == value[-1] and value[0] in '"\'':
        value = value[1:-1]
    return line[:delimiter].strip(), value, delimiter


def parse_ini_lines(lines):
    """Classify each line like oslo.config's iniparser (which PasteDeploy's files also fit)."""
    parsed, section, in_assignment = [], None, False
    for raw in lines:
        line = raw.rstrip()
        if not line:
            parsed.append(IniLine('blank', section))
            in_assignment = False
        elif line[0] in ' \t':
            parsed.append(IniLine('continuation' if in_assignment else 'other', section))
        elif line.startswith('[') and line.endswith(']') and len(line) > 2:
            section = line[1:-1]
            parsed.append(IniLine('section', section))
            in_assignment = False
        elif line.startswith(('#', ';')):
            parsed.append(IniLine('comment', section))
            in_assignment = False
        else:
            split = _split_assignment(line)
            if split and split[0]:
                parsed.append(IniLine('assign', section, split[0], split[1]))
                in_assignment = True
            else:
                parsed.append(IniLine('other', section))
                in_assignment = False
    return parsed


class IniDocument:
    """An ini file held as its lines and edited in memory.

    Setting an option changes only that option's line (or adds one line, or a
    section at the end): comments, order, spacing and everything else stay.
    """

    def __init__(self, path, text):
        self.path = path
        self.original = text
        self.lines = text.splitlines(keepends=True)
        self.newline = '\r\n' if self.lines and self.lines[0].endswith('\r\n') else '\n'

    @classmethod
    def load(cls, path):
        try:
            with open(path, encoding='utf-8', newline='') as f:   # newline='': keep \r\n as is
                return cls(path, f.read())
        except FileNotFoundError:
            raise IniError('%s does not exist (write nova\'s own configuration first; '
                                 'an empty file will do)' % path)
        except (OSError, UnicodeDecodeError) as e:
            raise IniError('cannot read %s: %s' % (path, e))

    @property
    def text(self):
        return ''.join(self.lines)

    @property
    def changed(self):
        return self.text != self.original

    def has_section(self, section):
        return any(line.kind == 'section' and line.section == section
                   for line in parse_ini_lines(self.lines))

    def assignments(self, section, option):
        """Indices of the lines assigning `option` in `section` (every block of it)."""
        return [i for i, line in enumerate(parse_ini_lines(self.lines))
                if line.kind == 'assign' and line.section == section and line.key == option]

    def get(self, section, option):
        """The value oslo.config would read (the last assignment), or None."""
        parsed = parse_ini_lines(self.lines)
        found = self.assignments(section, option)
        return parsed[found[-1]].value if found else None

    def set(self, section, option, value):
        """Make `option = value` hold in `section`; True if the text changed."""
        found = self.assignments(section, option)
        if found:
            return self._update(found, value)
        new_line = '%s = %s' % (option, value) if value else '%s =' % option
        at = self._insertion_point(section, option)
        if at is None:
            self._append_section(section, [new_line])
        else:
            self.lines.insert(at, new_line + self.newline)
        return True

    def replace_line(self, index, new_lines):
        """Replace line `index` (and its continuation lines) by `new_lines` (with newlines)."""
        end = self._assignment_end(index)
        self.lines[index:end] = new_lines

    def _assignment_end(self, index):
        parsed = parse_ini_lines(self.lines)
        end = index + 1
        while end < len(parsed) and parsed[end].kind == 'continuation':
            end += 1
        return end

    def _update(self, indices, value):
        changed = False
        parsed = parse_ini_lines(self.lines)
        for index in reversed(indices):   # from the end: indices before stay valid
            single_line = self._assignment_end(index) == index + 1
            if parsed[index].value == value and single_line:
                continue
            self.replace_line(index, [self._rewrite_value(self.lines[index], value)])
            changed = True
        return changed

    def _rewrite_value(self, raw, value):
        """`raw` with its value replaced, keeping the key and the spacing around the delimiter."""
        line = raw.rstrip('\r\n')
        delimiter = _split_assignment(line)[2]
        after = line[delimiter + 1:]
        spacing = after[:len(after) - len(after.lstrip())]
        if not spacing and not after.strip() and line[:delimiter].endswith(' '):
            spacing = ' '     # "key =" becomes "key = value", not "key =value"
        return line[:delimiter + 1] + (spacing + value if value else '') + self.newline

    def _insertion_point(self, section, option):
        """Where a new `option` line goes in an existing `section`, or None if there is none.

        Right after a commented-out sample of the option ("#option = ...") if the
        section has one, else after the last option of the section's last block (after
        its header if it has none): not after comments that may introduce the next section.
        """
        parsed = parse_ini_lines(self.lines)
        in_section = [i for i, line in enumerate(parsed) if line.section == section]
        if not in_section:
            return None
        for i in reversed(in_section):
            if parsed[i].kind == 'comment':
                sample = _split_assignment(self.lines[i].rstrip().lstrip('#; \t'))
                if sample and sample[0] == option:
                    return i + 1
        last_header = max(i for i in in_section if parsed[i].kind == 'section')
        last = last_header
        for i in in_section:
            if i > last_header and parsed[i].kind in ('assign', 'continuation', 'other'):
                last = i
        return last + 1

    def _append_section(self, section, new_lines):
        if self.lines and not self.lines[-1].endswith('\n'):
            self.lines[-1] += self.newline
        if self.lines and self.lines[-1].strip():
            self.lines.append(self.newline)
        self.lines.append('[%s]%s' % (section, self.newline))
        self.lines.extend(line + self.newline for line in new_lines)


def replace_atomically(path, text, existing=True):
    """Write `text` to `path` through a temporary file in the same directory.

    `existing`: replace the file, keeping its mode and owner (and a symlink
    pointing to it). Otherwise create it, and never overwrite one that appeared
    meanwhile (an operator's file wins).
    """
    target = os.path.realpath(path)
    directory, name = os.path.split(target)
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % name, suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8', newline='') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if existing:
            st = os.stat(target)
            os.chmod(tmp, st.st_mode & 0o7777)
            try:
                os.chown(tmp, st.st_uid, st.st_gid)
            except PermissionError:
                pass          # not root: the file stays ours, as it was
            os.replace(tmp, target)
        else:
            os.chmod(tmp, 0o644)
            os.link(tmp, target)      # fails if the file exists
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def render(sections):
    """{section: {option: value}} as the text of a new ini file (values as given)."""
    document = IniDocument(None, '')
    for section, options in sections.items():
        for option, value in options.items():
            document.set(section, option, str(value))
    return document.text
