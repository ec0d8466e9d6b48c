"""Build step for the wiring: hooks/, devd/, ocf/, heartbeat-resource.d/ and man/ stay the
one source in the repository; every built wheel carries a copy of them as package data
under hahooks/_wiring/, which hahooks.wiring.shipped finds through importlib.resources
(`hahooks install-wiring` installs them from there). Metadata lives in setup.cfg."""
import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
# keep in step with hahooks.wiring.shipped.WIRING_DIRS (the build cannot import the package)
WIRING_DIRS = ("hooks", "devd", "ocf", "heartbeat-resource.d", "man")


class BuildPyWithWiring(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return      # an editable install reads the checkout's own directories
        for top in WIRING_DIRS:
            source = os.path.join(HERE, top)
            target = os.path.join(self.build_lib, "hahooks", "_wiring", top)
            self.mkpath(target)
            for name in sorted(os.listdir(source)):
                path = os.path.join(source, name)
                if os.path.isfile(path):
                    self.copy_file(path, os.path.join(target, name))


setup(cmdclass={"build_py": BuildPyWithWiring})
