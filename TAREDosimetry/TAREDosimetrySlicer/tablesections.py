"""The panel's two editable tables: segment roles and threshold rules (widget sections of TAREDosimetry.py).

Each section holds the module widget's ``ui`` and ``logic`` and reads/writes the parameter node
through ``parameterNode()``; the rule table's state (a table that is not a valid rule set) is
``rulesError``, which disables Apply.
"""

import json

import qt

import slicer
from slicer.i18n import tr as _

from TAREDosimetryLib import mrmlconvert as mc
from TAREDosimetryLib import panel
from TAREDosimetryLib.errors import InputError
from TAREDosimetryLib.evaluation.roles import ROLE_LABELS, ROLES
from TAREDosimetryLib.evaluation.rules import DEFAULT_PRESET, PRESETS, RuleSet, load_rules

CUSTOM_RULES_LABEL = "(custom rules)"


class RolesSection:
    """Segment roles: one row per segment, the role in a combo box, saved as JSON in the parameter node."""

    def __init__(self, ui, logic, parameterNode):
        self.ui, self.logic, self.parameterNode = ui, logic, parameterNode
        self.updating = False
        self.ui.rolesTable.setHorizontalHeaderLabels([_("Segment"), _("Role")])
        self.ui.rolesTable.horizontalHeader().setStretchLastSection(True)
        self.ui.refreshRolesButton.connect("clicked(bool)", lambda: self.update())
        self.ui.guessRolesButton.connect("clicked(bool)", self.onGuessRoles)

    def update(self) -> None:
        pn = self.parameterNode()
        table = self.ui.rolesTable
        self.updating = True
        try:
            names = self.logic.segmentNames(pn.segmentation) if pn is not None and pn.segmentation else []
            rows = mc.role_rows(names, self.logic.savedRoles(pn) if pn is not None else {})
            table.setRowCount(len(rows))
            for r, (name, role) in enumerate(rows):
                item = qt.QTableWidgetItem(name)
                item.setFlags(qt.Qt.ItemIsSelectable | qt.Qt.ItemIsEnabled)
                table.setItem(r, 0, item)
                combo = qt.QComboBox()
                for key in ROLES:
                    combo.addItem(ROLE_LABELS.get(key, key), key)
                combo.setCurrentIndex(ROLES.index(role))
                combo.connect("currentIndexChanged(int)", self.onRoleChanged)
                table.setCellWidget(r, 1, combo)
        finally:
            self.updating = False
        if pn is not None:
            self.store()

    def store(self) -> None:
        table = self.ui.rolesTable
        rows = []
        for r in range(table.rowCount):
            combo = table.cellWidget(r, 1)
            rows.append((table.item(r, 0).text(), combo.itemData(combo.currentIndex)))
        text = json.dumps(mc.roles_from_rows(rows), sort_keys=True)
        pn = self.parameterNode()
        if pn.segmentRolesJson != text:
            pn.segmentRolesJson = text

    def onRoleChanged(self, index=None) -> None:
        if not self.updating and self.parameterNode() is not None:
            self.store()

    def onGuessRoles(self) -> None:
        if self.parameterNode() is not None:
            self.parameterNode().segmentRolesJson = "{}"
            self.update()


class RulesSection:
    """Threshold rules: a preset, or a custom rule set edited in the table (saved as JSON)."""

    def __init__(self, ui, logic, parameterNode, changed, setStatus):
        self.ui, self.logic, self.parameterNode = ui, logic, parameterNode
        self.changed, self.setStatus = changed, setStatus
        self.updating = False
        self.rulesError = ""
        self.tomlDeclined = False
        self.ui.rulesTable.setHorizontalHeaderLabels([c.capitalize() for c in mc.RULE_COLUMNS])
        self.ui.rulesTable.horizontalHeader().setStretchLastSection(True)
        self.ui.presetComboBox.addItems(list(PRESETS) + [CUSTOM_RULES_LABEL])
        for name, rs in PRESETS.items():
            self.ui.presetComboBox.setItemData(list(PRESETS).index(name), rs.description, qt.Qt.ToolTipRole)
        self.ui.presetComboBox.connect("currentIndexChanged(int)", self.onPresetChanged)
        self.ui.rulesTable.connect("itemChanged(QTableWidgetItem*)", self.onRuleEdited)
        self.ui.addRuleButton.connect("clicked(bool)", self.onAddRule)
        self.ui.removeRuleButton.connect("clicked(bool)", self.onRemoveRule)
        self.ui.loadRulesButton.connect("clicked(bool)", self.onLoadRules)
        self.ui.resetRulesButton.connect("clicked(bool)", self.onResetRules)

    def _fill(self, ruleset: RuleSet) -> None:
        table = self.ui.rulesTable
        self.updating = True
        try:
            rows = mc.rule_rows(ruleset)
            table.setRowCount(len(rows))
            for r, row in enumerate(rows):
                for c, text in enumerate(row):
                    table.setItem(r, c, qt.QTableWidgetItem(text))
            table.resizeColumnsToContents()
        finally:
            self.updating = False

    def _rows(self):
        table = self.ui.rulesTable
        return [[table.item(r, c).text() if table.item(r, c) else "" for c in range(table.columnCount)]
                for r in range(table.rowCount)]

    def updateFromParameterNode(self) -> None:
        pn = self.parameterNode()
        try:
            ruleset = self.logic.ruleSet(pn)
            self.rulesError = ""
        except InputError as exc:
            ruleset = PRESETS[DEFAULT_PRESET]
            self.rulesError = str(exc)
        label = CUSTOM_RULES_LABEL if pn.rulesJson else pn.rulePreset
        index = self.ui.presetComboBox.findText(label)
        wasBlocked = self.ui.presetComboBox.blockSignals(True)
        self.ui.presetComboBox.setCurrentIndex(index if index >= 0 else 0)
        self.ui.presetComboBox.blockSignals(wasBlocked)
        self._fill(ruleset)

    def onPresetChanged(self, index: int) -> None:
        name = self.ui.presetComboBox.itemText(index)
        pn = self.parameterNode()
        if pn is None or name == CUSTOM_RULES_LABEL:
            return
        with slicer.util.NodeModify(pn):
            pn.rulePreset = name
            pn.rulesJson = ""
        self.rulesError = ""
        self._fill(PRESETS[name])
        self.changed()

    def onRuleEdited(self, item=None) -> None:
        if not self.updating and self.parameterNode() is not None:
            self.store()

    def _scope(self):
        """Scope of the rules being edited (the preset's or the loaded file's): an edited copy keeps it, so the
        report still says what the thresholds were derived from."""
        pn = self.parameterNode()
        try:
            return self.logic.ruleSet(pn).scope
        except InputError:
            preset = PRESETS.get(pn.rulePreset)
            return preset.scope if preset is not None else None

    def store(self) -> None:
        try:
            ruleset = mc.ruleset_from_rows(_("custom"), self._rows(), scope=self._scope())
        except InputError as exc:
            self.rulesError = str(exc)
            self.changed()
            return
        self.rulesError = ""
        self.parameterNode().rulesJson = json.dumps(ruleset.to_dict())
        wasBlocked = self.ui.presetComboBox.blockSignals(True)
        self.ui.presetComboBox.setCurrentIndex(self.ui.presetComboBox.findText(CUSTOM_RULES_LABEL))
        self.ui.presetComboBox.blockSignals(wasBlocked)
        self.changed()

    def onAddRule(self) -> None:
        table = self.ui.rulesTable
        self.updating = True
        try:
            r = table.rowCount
            table.insertRow(r)
            defaults = {"role": "tumor", "metric": "mean_gy", "comparison": ">", "threshold": "100", "unit": "Gy", "kind": "efficacy"}
            for c, col in enumerate(mc.RULE_COLUMNS):
                table.setItem(r, c, qt.QTableWidgetItem(defaults.get(col, "")))
        finally:
            self.updating = False
        self.store()

    def onRemoveRule(self) -> None:
        table = self.ui.rulesTable
        # QAbstractItemView::selectedIndexes() is protected in Qt; the selection model's is public.
        rows = sorted({index.row() for index in table.selectionModel().selectedIndexes()}, reverse=True)
        if not rows:
            self.setStatus(_("Select the rule rows to remove first."))
            return
        self.updating = True
        try:
            for r in rows:
                table.removeRow(r)
        finally:
            self.updating = False
        self.store()

    def onLoadRules(self) -> None:
        # TOML is offered only where it can be read (Slicer 5.8 has no tomllib): with the user's
        # consent tomli is installed, otherwise JSON files only.
        toml = panel.toml_reader_available() or (not self.tomlDeclined and self.logic.ensureTomlReader(askUser=True))
        self.tomlDeclined = not toml  # asked once per session
        path = qt.QFileDialog.getOpenFileName(None, _("Load threshold rules"), "", panel.rule_file_filter(toml))
        if not path:
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not load the rule file."), waitCursor=True):
                self.parameterNode().rulesJson = json.dumps(load_rules(path).to_dict())
                self.updateFromParameterNode()
                self.changed()
        except Exception as exc:  # tryWithErrorDisplay showed it and re-raised
            self.setStatus(_("Could not load the rule file: {error}").format(error=exc))

    def onResetRules(self) -> None:
        self.parameterNode().rulesJson = ""
        self.rulesError = ""
        self.updateFromParameterNode()
        self.changed()
