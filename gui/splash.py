"""The start-up splash: shown before anything heavy is imported, saying what loads.

A plain frameless widget rather than ``QSplashScreen``, whose ``show()`` blocks until the
window is exposed (a full second on Xvfb and offscreen, where no exposure comes).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QLabel, QVBoxLayout, QWidget


class Splash(QWidget):
    """The app's name and a one-line step message, centred on the screen."""

    def __init__(self) -> None:
        super().__init__(None, Qt.WindowType.SplashScreen | Qt.WindowType.FramelessWindowHint)
        self.setObjectName("splash")
        self.setStyleSheet("QWidget#splash { background: #20242b; } "
                           "QLabel { color: #a8b0bb; font-size: 10pt; }")
        self.title = QLabel("Crossmix")
        self.title.setStyleSheet("color: #e8e8e8; font-size: 22pt; font-weight: bold;")
        self.step = QLabel("")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(30, 24, 30, 18)
        for w in (self.title, QLabel("accompaniments for a singer's voice"), self.step):
            w.setAlignment(Qt.AlignmentFlag.AlignHCenter)
            lay.addWidget(w)
        self.setFixedSize(420, 160)
        screen = QGuiApplication.primaryScreen()
        if screen is not None:
            self.move(screen.availableGeometry().center() - self.rect().center())
        self.steps: list[str] = []
        self.show()
        QApplication.processEvents()

    def show_step(self, text: str) -> None:
        """Say what is loading now (repainted at once: the event loop is not running yet)."""
        self.steps.append(text)
        self.step.setText(f"{text}…")
        self.repaint()
        QApplication.processEvents()

    def finish(self, _window: QWidget) -> None:
        self.close()
        self.deleteLater()
