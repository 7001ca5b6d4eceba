// One bundle for every npm dependency of the page, so React exists once.
// The import map in index.html points "react", "react-dom/client" and
// "agentation" at small shims that re-export from this bundle.
import * as React from "react";
import { createRoot } from "react-dom/client";
import { Agentation } from "agentation";

export { Agentation, createRoot, React };
